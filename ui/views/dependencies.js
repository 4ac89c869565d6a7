// The service map: who calls whom in a time range (`GET /api/v1/dependencies`), drawn as an SVG
// in layers from left (callers) to right (callees), with pan and zoom. A node opens a side panel
// with the service's RED charts and operations; an edge leads to the traces of those calls.

import { navigate, setParams } from '../app.js';
import {
  h, svg, getJSON, showLoading, showError, showEmpty, noDataYet, fmtDuration, rangeFromParams,
  rfc3339, serviceColor,
} from '../util.js';
import { fmtNumber, fmtRate } from '../chart.js';
import { lookbackSelect, redCharts, redTable, operationsTable } from './monitor.js';

const NODE_W = 210;
const NODE_H = 56;
const LAYER_GAP = 300; // between the left edges of two layers
const ROW_GAP = 84; // between the tops of two nodes of a layer
const BARYCENTER_SWEEPS = 4;
const MAX_ROWS = 10; // nodes of one layer in one column, at most
const COLUMN_GAP = NODE_W + 40; // between the columns of a wrapped layer

// ---- layout -------------------------------------------------------------------------------

const edgeKey = (e) => `${e.parent}\u0000${e.child}`;

/**
 * Places nodes in layers: longest path from the roots (a node sits one layer right of its
 * furthest caller), cycles broken by dropping the edges a depth-first search finds going back.
 * A call that skips layers gets a waypoint in each layer it crosses, so it is routed around the
 * nodes there. Each layer is then ordered by the mean position of its neighbours (barycenter),
 * sweeping right and left, to reduce crossings.
 * Returns {coords: Map name → {x, y, layer}, routes: Map edgeKey → [{x, y}] waypoints}.
 */
export function layout(names, edges) {
  const out = new Map(names.map((n) => [n, []]));
  for (const e of edges) if (e.parent !== e.child) out.get(e.parent)?.push(e.child);
  const indegree = new Map(names.map((n) => [n, 0]));
  for (const e of edges) if (e.parent !== e.child) indegree.set(e.child, indegree.get(e.child) + 1);

  // Depth-first from the roots (then from whatever is left, which sits on a cycle): edges to a
  // node still on the stack close a cycle and are left out of the layering.
  const back = new Set();
  const state = new Map(); // 1 = on the stack, 2 = done
  const discovered = [];
  const visit = (n) => {
    state.set(n, 1);
    discovered.push(n);
    for (const c of out.get(n)) {
      if (state.get(c) === 1) back.add(`${n}\u0000${c}`);
      else if (!state.has(c)) visit(c);
    }
    state.set(n, 2);
  };
  const byName = [...names].sort();
  for (const n of byName) if (indegree.get(n) === 0) visit(n);
  for (const n of byName) if (!state.has(n)) visit(n);
  const dag = edges.filter((e) => e.parent !== e.child && !back.has(edgeKey(e)));

  // Longest path layering, relaxing in topological order (Kahn).
  const layerOf = new Map(names.map((n) => [n, 0]));
  const remaining = new Map(names.map((n) => [n, 0]));
  for (const e of dag) remaining.set(e.child, remaining.get(e.child) + 1);
  const queue = discovered.filter((n) => remaining.get(n) === 0);
  const children = new Map(names.map((n) => [n, []]));
  for (const e of dag) children.get(e.parent).push(e.child);
  while (queue.length) {
    const n = queue.shift();
    for (const c of children.get(n)) {
      layerOf.set(c, Math.max(layerOf.get(c), layerOf.get(n) + 1));
      remaining.set(c, remaining.get(c) - 1);
      if (remaining.get(c) === 0) queue.push(c);
    }
  }
  const layers = [];
  for (const n of discovered) (layers[layerOf.get(n)] ??= []).push(n);

  // Waypoints of the calls that skip layers, chained as segments between adjacent layers.
  const neighbours = new Map(names.map((n) => [n, { left: [], right: [] }]));
  const link = (a, b) => { neighbours.get(b).left.push(a); neighbours.get(a).right.push(b); };
  const waypoints = new Map(); // edgeKey → [{id, layer}]
  for (const e of dag) {
    let previous = e.parent;
    const chain = [];
    for (let l = layerOf.get(e.parent) + 1; l < layerOf.get(e.child); l++) {
      const id = `\u0001${edgeKey(e)}\u0001${l}`;
      neighbours.set(id, { left: [], right: [] });
      layers[l].push(id);
      chain.push({ id, layer: l });
      link(previous, id);
      previous = id;
    }
    link(previous, e.child);
    if (chain.length) waypoints.set(edgeKey(e), chain);
  }

  // Barycenter ordering. Positions are centred per layer so layers of different sizes line up.
  const pos = new Map();
  const place = () => layers.forEach((layer) => layer.forEach((n, i) => pos.set(n, i - (layer.length - 1) / 2)));
  place();
  const sortBy = (layer, side) => {
    const key = new Map(layer.map((n) => {
      const ns = neighbours.get(n)[side];
      return [n, ns.length ? ns.reduce((sum, m) => sum + pos.get(m), 0) / ns.length : pos.get(n)];
    }));
    layer.sort((a, b) => key.get(a) - key.get(b));
  };
  for (let sweep = 0; sweep < BARYCENTER_SWEEPS; sweep++) {
    for (let l = 1; l < layers.length; l++) { sortBy(layers[l], 'left'); place(); }
    for (let l = layers.length - 2; l >= 0; l--) { sortBy(layers[l], 'right'); place(); }
  }

  // A layer taller than MAX_ROWS wraps into side-by-side columns (row-major, so the barycenter
  // order stays top to bottom): 40 callees of one service stay readable instead of shrinking
  // the whole map to fit one column.
  const spot = new Map(); // node or waypoint → {x, y}
  let x = 0;
  for (const layer of layers) {
    const columns = Math.ceil(layer.length / MAX_ROWS) || 1;
    const rows = Math.ceil(layer.length / columns);
    layer.forEach((n, i) => {
      const column = i % columns;
      const row = Math.floor(i / columns);
      spot.set(n, { x: x + column * COLUMN_GAP, y: (row - (rows - 1) / 2) * ROW_GAP });
    });
    x += (columns - 1) * COLUMN_GAP + LAYER_GAP;
  }
  const coords = new Map(names.map((n) => [n, { ...spot.get(n), layer: layerOf.get(n) }]));
  const routes = new Map([...waypoints].map(([key, chain]) => [key, chain.map(({ id }) => spot.get(id))]));
  return { coords, routes };
}

// ---- drawing ------------------------------------------------------------------------------

/** The outline of a node of `kind` at (x, y): services are boxes, databases cylinders, brokers
 *  hexagons, external peers dashed boxes. */
function nodeShape(kind, x, y) {
  const w = NODE_W;
  const hgt = NODE_H;
  if (kind === 'database') {
    const e = 7;
    return [
      svg('path', { class: 'shape', d: `M${x},${y + e} A${w / 2},${e} 0 0 1 ${x + w},${y + e} V${y + hgt - e} A${w / 2},${e} 0 0 1 ${x},${y + hgt - e} Z` }),
      svg('path', { class: 'shape-line', d: `M${x},${y + e} A${w / 2},${e} 0 0 0 ${x + w},${y + e}` }),
    ];
  }
  if (kind === 'broker') {
    const c = 14;
    return [svg('path', { class: 'shape', d: `M${x + c},${y} H${x + w - c} L${x + w},${y + hgt / 2} L${x + w - c},${y + hgt} H${x + c} L${x},${y + hgt / 2} Z` })];
  }
  return [svg('rect', { class: 'shape', x, y, width: w, height: hgt, rx: kind === 'external' ? 14 : 6 })];
}

const KIND_LABEL = { database: 'database', broker: 'broker', external: 'external' };

function truncate(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

function statsLine(stats) {
  if (!stats || stats.rate === null) return 'no requests';
  const p95 = stats.p95Nanos === null ? '' : ` · p95 ${fmtDuration(stats.p95Nanos)}`;
  return `${fmtRate(stats.rate)} · ${fmtNumber(stats.errorPct)}% err${p95}`;
}

/**
 * The path of a call: from the right side of `a` through the waypoints (straight across the
 * layers it skips) to the left side of `b`, smooth curves between. A call to a node in the same
 * or an earlier layer (a cycle) loops below both instead. Returns {d, mid} (mid: label spot).
 */
function edgePath(a, b, waypoints = []) {
  if (b.layer > a.layer) {
    const points = [[a.x + NODE_W, a.y + NODE_H / 2]];
    for (const w of waypoints) points.push([w.x, w.y + NODE_H / 2], [w.x + NODE_W, w.y + NODE_H / 2]);
    points.push([b.x - 4, b.y + NODE_H / 2]);
    let d = `M${points[0]}`;
    for (let i = 1; i < points.length; i++) {
      const [[x0, y0], [x1, y1]] = [points[i - 1], points[i]];
      const mx = (x0 + x1) / 2;
      d += i % 2 ? ` C${mx},${y0} ${mx},${y1} ${x1},${y1}` : ` L${x1},${y1}`;
    }
    // The label sits on the middle of the first curve, near the caller it belongs to.
    return { d, mid: [(points[0][0] + points[1][0]) / 2, (points[0][1] + points[1][1]) / 2] };
  }
  const [x0, y0, x1, y1] = [a.x + NODE_W / 2, a.y + NODE_H, b.x + NODE_W / 2 + 12, b.y + NODE_H + 4];
  const dip = Math.max(y0, y1) + 60;
  return { d: `M${x0},${y0} C${x0},${dip} ${x1},${dip} ${x1},${y1}`, mid: [(x0 + x1) / 2, dip - 15] };
}

/**
 * Where clicking an edge leads: the traces of that call.
 * - to a database, broker or external peer: the parent's client spans naming that peer
 *   (service=parent plus the peer attribute the map took the name from);
 * - to a service: the traces where a span of the child has its parent span in the parent
 *   service (`parentService`).
 */
function edgeTracesUrl(edge, kindOf, lookback) {
  const q = JSON.stringify(edge.child);
  const peerQuery = {
    database: `db.system:${q}`,
    broker: `messaging.system:${q}`,
    external: `peer.service:${q} OR server.address:${q} OR net.peer.name:${q}`,
  }[kindOf(edge.child)];
  const params = peerQuery && kindOf(edge.parent) === 'service'
    ? { service: edge.parent, query: peerQuery, lookback }
    : { service: edge.child, parentService: edge.parent, lookback };
  return `/search?${new URLSearchParams(params)}`;
}

/** Wheel zoom around the pointer, drag to pan, keys +/-/arrows/0, by rewriting the viewBox. */
function panZoom(svgEl, fit) {
  let vb = { ...fit };
  const apply = () => svgEl.setAttribute('viewBox', `${vb.x} ${vb.y} ${vb.w} ${vb.h}`);
  const toSvg = (clientX, clientY, ctm = svgEl.getScreenCTM()) => {
    const p = new DOMPoint(clientX, clientY).matrixTransform(ctm.inverse());
    return [p.x, p.y];
  };
  const zoom = (factor, [cx, cy] = [vb.x + vb.w / 2, vb.y + vb.h / 2]) => {
    const w = Math.min(Math.max(vb.w * factor, fit.w / 20), fit.w * 4);
    const f = w / vb.w;
    vb = { x: cx - (cx - vb.x) * f, y: cy - (cy - vb.y) * f, w, h: vb.h * f };
    apply();
  };
  svgEl.addEventListener('wheel', (e) => {
    e.preventDefault();
    zoom(Math.exp(e.deltaY * 0.0015), toSvg(e.clientX, e.clientY));
  }, { passive: false });
  let drag = null;
  svgEl.addEventListener('pointerdown', (e) => {
    if (e.button !== 0 || e.target.closest('.map-node, .map-edge')) return;
    drag = { ctm: svgEl.getScreenCTM(), start: toSvg(e.clientX, e.clientY), vb: { ...vb } };
    svgEl.setPointerCapture(e.pointerId);
    svgEl.classList.add('dragging');
  });
  svgEl.addEventListener('pointermove', (e) => {
    if (!drag) return;
    const [x, y] = toSvg(e.clientX, e.clientY, drag.ctm);
    vb = { ...drag.vb, x: drag.vb.x - (x - drag.start[0]), y: drag.vb.y - (y - drag.start[1]) };
    apply();
  });
  const stop = () => { drag = null; svgEl.classList.remove('dragging'); };
  svgEl.addEventListener('pointerup', stop);
  svgEl.addEventListener('pointercancel', stop);
  svgEl.addEventListener('keydown', (e) => {
    if (e.target !== svgEl) return;
    const step = vb.w / 10;
    const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
    if (e.key === '+' || e.key === '=') zoom(1 / 1.25);
    else if (e.key === '-') zoom(1.25);
    else if (e.key === '0') { vb = { ...fit }; apply(); }
    else if (moves[e.key]) { vb.x += moves[e.key][0]; vb.y += moves[e.key][1]; apply(); }
    else return;
    e.preventDefault();
  });
  apply();
  return {
    zoomIn: () => zoom(1 / 1.25),
    zoomOut: () => zoom(1.25),
    reset: () => { vb = { ...fit }; apply(); },
  };
}

// ---- the view -----------------------------------------------------------------------------

export async function render(root, { params, signal }) {
  const lookback = params.get('lookback') || '1h';
  let selected = params.get('service') || '';
  const range = rangeFromParams(params, '1h');
  let panelCleanup = null;

  const main = h('div', { class: 'map-main' });
  const panel = h('aside', { class: 'panel service-panel', 'data-testid': 'service-panel', hidden: true, 'aria-label': 'Service details' });
  const notes = h('div');
  const layoutEl = h('div', { class: 'map-layout' }, main, panel);
  root.append(h('div', { class: 'view-explore view-map' },
    h('div', { class: 'toolbar' },
      lookbackSelect(lookback, (v) => navigate(`/dependencies?${new URLSearchParams({ lookback: v, ...(selected ? { service: selected } : {}) })}`)),
      h('span', { class: 'muted map-hint' }, 'Drag to pan, wheel to zoom. Click a service for its metrics, a call for its traces.')),
    notes, layoutEl));

  showLoading(main, 'Computing the service map…');
  const [graph, serviceStats] = await Promise.all([
    getJSON('/api/v1/dependencies', { start: rfc3339(range[0]), end: rfc3339(range[1]) }, { signal }),
    // The services' own rate, errors and p95 (server and consumer spans); the map still works
    // without them, from the calls into each node.
    redTable('span_kind=~"SPAN_KIND_SERVER|SPAN_KIND_CONSUMER"', ['service'], range, signal).catch((err) => {
      if (err.name === 'AbortError') throw err;
      return [];
    }),
  ]);

  notes.replaceChildren(...(graph.warnings ?? []).map((w) =>
    h('div', { class: 'state warn-note', role: 'note' }, h('strong', {}, 'Not every span was paired: '), w)));
  if (!graph.nodes.length) {
    if (graph.spans > 0) {
      showEmpty(main, 'No calls between services in this time range.',
        `${graph.spans} spans started in this range, but none calls another service or a peer. Pick a longer time range, or check that your services propagate trace context.`);
    } else {
      showEmpty(main, 'No spans in this time range.', ...noDataYet('traces'), ' Or pick a longer time range.');
    }
    return undefined;
  }

  const seconds = (range[1] - range[0]) / 1000;
  const kinds = new Map(graph.nodes.map((n) => [n.name, n.kind]));
  const kindOf = (name) => kinds.get(name) ?? 'service';
  const stats = nodeStats(graph, serviceStats, seconds);
  const { coords, routes } = layout(graph.nodes.map((n) => n.name), graph.edges);
  const maxRate = Math.max(...graph.edges.map((e) => e.callCount), 1);

  const defs = svg('defs', {},
    ['ok', 'erroring'].map((cls) => svg('marker', {
      id: `map-arrow-${cls}`, class: `map-arrow ${cls}`, viewBox: '0 0 10 10', refX: 9, refY: 5,
      markerWidth: 9, markerHeight: 9, markerUnits: 'userSpaceOnUse', orient: 'auto',
    }, svg('path', { d: 'M0,0 L10,5 L0,10 z' }))));

  const edgeEls = graph.edges.map((e) => {
    const a = coords.get(e.parent);
    const b = coords.get(e.child);
    const { d, mid } = edgePath(a, b, routes.get(edgeKey(e)));
    const rate = e.callCount / seconds;
    const errPct = e.callCount ? (100 * e.errorCount) / e.callCount : 0;
    const cls = e.errorCount > 0 ? 'erroring' : 'ok';
    const label = `${fmtRate(rate)}${e.errorCount ? ` · ${fmtNumber(errPct)}%` : ''}`;
    const title = `${e.parent} → ${e.child}\n${fmtRate(rate)} (${e.callCount} calls), `
      + `${fmtNumber(errPct)}% errors\np50 ${fmtDuration(e.p50Nanos)} · p95 ${fmtDuration(e.p95Nanos)} · p99 ${fmtDuration(e.p99Nanos)}\nClick for the traces of these calls`;
    const go = () => navigate(edgeTracesUrl(e, kindOf, lookback));
    return svg('g', {
      class: `map-edge ${cls}`, 'data-testid': 'map-edge', 'data-parent': e.parent, 'data-child': e.child,
      tabindex: 0, role: 'link', 'aria-label': title.replaceAll('\n', ', '),
      onclick: go, onkeydown: (ev) => { if (ev.key === 'Enter') go(); },
    },
    svg('title', {}, title),
    svg('path', { class: 'hit', d }),
    svg('path', { class: 'line', d, 'stroke-width': (1.2 + 5 * Math.sqrt(e.callCount / maxRate)).toFixed(2), 'marker-end': `url(#map-arrow-${cls})` }),
    svg('text', { class: 'edge-label', x: mid[0], y: mid[1] - 4, 'text-anchor': 'middle' }, label));
  });

  const nodeEls = graph.nodes.map((n) => {
    const { x, y } = coords.get(n.name);
    const s = stats.get(n.name);
    const title = `${n.name} (${n.kind})\n${statsLine(s)}${s?.source ? `\n${s.source}` : ''}`;
    return svg('g', {
      class: `map-node kind-${n.kind}${s?.errorPct > 0 ? ' erroring' : ''}`, 'data-testid': 'map-node',
      'data-service': n.name, tabindex: 0, role: 'button', 'aria-label': title.replaceAll('\n', ', '),
      onclick: () => select(n.name), onkeydown: (ev) => { if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); select(n.name); } },
    },
    svg('title', {}, title),
    ...nodeShape(n.kind, x, y),
    n.kind === 'service' ? svg('rect', { class: 'stripe', x: x + 1, y: y + 1, width: 5, height: NODE_H - 2, rx: 3, fill: serviceColor(n.name) }) : null,
    svg('text', { class: 'node-name', x: x + 14, y: y + 22 }, truncate(n.name, 24)),
    svg('text', { class: 'node-stats', x: x + 14, y: y + 41 }, statsLine(s)),
    KIND_LABEL[n.kind] ? svg('text', { class: 'node-kind', x: x + NODE_W - 10, y: y + 14, 'text-anchor': 'end' }, KIND_LABEL[n.kind]) : null);
  });

  const xs = [...coords.values()];
  const pad = 60;
  const minX = Math.min(...xs.map((c) => c.x)) - pad;
  const minY = Math.min(...xs.map((c) => c.y)) - pad;
  const fit = {
    x: minX, y: minY,
    w: Math.max(...xs.map((c) => c.x)) + NODE_W + pad - minX,
    h: Math.max(...xs.map((c) => c.y)) + NODE_H + pad + 60 - minY,
  };
  const mapSvg = svg('svg', {
    class: 'service-map', 'data-testid': 'service-map', tabindex: 0, role: 'group',
    'aria-label': `Service map: ${graph.nodes.length} nodes, ${graph.edges.length} calls. Arrow keys pan, + and - zoom, 0 resets.`,
  }, defs, svg('g', { class: 'edges' }, edgeEls), svg('g', { class: 'nodes' }, nodeEls));
  const view = panZoom(mapSvg, fit);
  main.replaceChildren(h('div', { class: 'map-wrap' }, mapSvg,
    h('div', { class: 'map-controls' },
      h('button', { type: 'button', title: 'Zoom in (+)', 'aria-label': 'Zoom in', onclick: view.zoomIn }, '+'),
      h('button', { type: 'button', title: 'Zoom out (-)', 'aria-label': 'Zoom out', onclick: view.zoomOut }, '−'),
      h('button', { type: 'button', title: 'Fit (0)', 'aria-label': 'Fit the map', onclick: view.reset }, '⤢')),
    legend()));

  function select(name) {
    selected = name;
    setParams({ lookback, service: name });
    for (const el of nodeEls) el.classList.toggle('selected', el.dataset.service === name);
    for (const el of edgeEls) {
      const touches = el.dataset.parent === name || el.dataset.child === name;
      el.classList.toggle('dimmed', Boolean(name) && !touches);
    }
    panelCleanup?.();
    panelCleanup = null;
    if (!name) {
      panel.hidden = true;
      return;
    }
    panel.hidden = false;
    const node = graph.nodes.find((n) => n.name === name);
    panelCleanup = fillPanel(panel, node ?? { name, kind: 'service' }, graph, stats.get(name), range, lookback, seconds, () => select(''));
  }

  if (selected) select(selected);
  return () => panelCleanup?.();
}

/**
 * Rate, error % and p95 per node: a service's own requests from the span metrics when there
 * are any; otherwise (databases, brokers, external peers, or no metrics) the calls into it
 * from the graph's edges, with the slowest caller's p95.
 */
function nodeStats(graph, serviceStats, seconds) {
  const stats = new Map();
  for (const r of serviceStats) {
    stats.set(r.labels.service, { rate: r.rate, errorPct: r.errorPct, p95Nanos: r.p95Nanos, source: 'requests served (span metrics)' });
  }
  for (const n of graph.nodes) {
    if (stats.has(n.name)) continue;
    const into = graph.edges.filter((e) => e.child === n.name);
    if (!into.length) { stats.set(n.name, null); continue; }
    const calls = into.reduce((s, e) => s + e.callCount, 0);
    const errors = into.reduce((s, e) => s + e.errorCount, 0);
    stats.set(n.name, {
      rate: calls / seconds,
      errorPct: calls ? (100 * errors) / calls : 0,
      p95Nanos: Math.max(...into.map((e) => e.p95Nanos)),
      source: 'calls into it; p95 of the slowest caller',
    });
  }
  return stats;
}

/** What the shapes and colours mean, drawn with the map's own shapes. */
function legend() {
  const item = (kind, text) => h('span', { class: 'legend-item' },
    svg('svg', { class: `map-node kind-${kind}`, viewBox: `-4 -4 ${NODE_W + 8} ${NODE_H + 8}`, width: 30, height: 10 },
      ...nodeShape(kind, 0, 0)), text);
  return h('div', { class: 'map-legend', 'aria-hidden': 'true' },
    item('service', 'service'), item('database', 'database'), item('broker', 'broker'),
    item('external', 'external'), h('span', { class: 'legend-item erroring' }, '━ failing calls'));
}

/** The side panel of a node. Returns a cleanup function. */
function fillPanel(panel, node, graph, stats, range, lookback, seconds, close) {
  const controller = new AbortController();
  const { signal } = controller;
  const name = node.name;
  const enc = encodeURIComponent(name);
  const callers = graph.edges.filter((e) => e.child === name);
  const callees = graph.edges.filter((e) => e.parent === name);
  const callTable = (title, edges, other) => (edges.length ? h('section', {},
    h('h4', {}, title),
    h('table', { class: 'red-table' },
      h('thead', {}, h('tr', {}, h('th', {}, other === 'parent' ? 'Caller' : 'Callee'), h('th', { class: 'num' }, 'Rate'),
        h('th', { class: 'num' }, 'Errors'), h('th', { class: 'num' }, 'p95'))),
      h('tbody', {}, edges.map((e) => h('tr', {},
        h('td', {}, e[other]),
        h('td', { class: 'num' }, fmtRate(e.callCount / seconds)),
        h('td', { class: `num${e.errorCount ? ' error-text' : ''}` }, `${fmtNumber(e.callCount ? (100 * e.errorCount) / e.callCount : 0)}%`),
        h('td', { class: 'num' }, fmtDuration(e.p95Nanos))))))) : null);

  const charts = h('div');
  const ops = h('div');
  // replaceChildren would write null as "null": leave out the sections a node does not have.
  panel.replaceChildren(...[
    h('header', { class: 'panel-head' },
      h('h3', {}, name, ' ', h('span', { class: 'badge' }, node.kind)),
      h('button', { type: 'button', class: 'close', 'aria-label': 'Close the panel', title: 'Close', onclick: close }, '×')),
    h('p', { class: 'muted' }, statsLine(stats)),
    node.kind === 'service' ? h('p', { class: 'panel-links' },
      h('a', { href: `/monitor?service=${enc}&lookback=${lookback}` }, 'Open in Services'), ' · ',
      h('a', { href: `/search?service=${enc}&lookback=${lookback}` }, 'Traces'), ' · ',
      h('a', { href: `/logs?query=${encodeURIComponent(`service:${JSON.stringify(name)}`)}&lookback=${lookback}` }, 'Logs')) : null,
    node.kind === 'service' ? charts : null,
    node.kind === 'service' ? h('section', {}, h('h4', {}, 'Operations'), ops) : null,
    callTable('Called by', callers, 'parent'),
    callTable('Calls', callees, 'child'),
  ].filter(Boolean));
  panel.scrollTop = 0;

  let chartsCleanup = null;
  if (node.kind === 'service') {
    showLoading(ops, 'Loading the operations…');
    redCharts(charts, name, range, signal).then((cleanup) => {
      if (signal.aborted) cleanup(); else chartsCleanup = cleanup;
    }, (err) => { if (err.name !== 'AbortError') showError(charts, err); });
    operationsTable(name, range, signal).then((table) => ops.replaceChildren(table),
      (err) => { if (err.name !== 'AbortError') showError(ops, err); });
  }
  return () => {
    controller.abort();
    chartsCleanup?.();
  };
}

// One trace: header, minimap, a virtualized waterfall of the span tree, and a span detail panel
// with the span's logs. Critical path, error path and clock skew come from
// `/api/v1/traces/{id}/analysis`; the waterfall works without them if that call fails.
//
// A trace may have 50,000 spans, so: the tree is built once with Maps and arrays (O(n)), the
// visible rows are a flat Int32Array recomputed only when the tree's shape changes (collapse,
// filter), and only the rows in the scroll window (plus overscan) exist in the DOM, positioned
// absolutely inside a container of full height. Bars are placed in percentages of the time
// window, so no row ever needs a layout read.

import { setParams } from '../app.js';
import {
  h, getJSON, showLoading, showError, showEmpty, fmtDuration, fmtTime, fmtAgo, serviceColor,
  serviceChip, copyText, debounce,
} from '../util.js';
import {
  buildModel, applyAnalysis, selfSegments, anyValue, valueText, recordAttributeKeys, skewText,
} from './trace/model.js';
import { renderDetail, fillLogs } from './trace/detail.js';

const ROW_HEIGHT = 24;
const OVERSCAN = 20;
const MAX_TICKS_PER_BAR = 40; // events and self-time segments drawn per bar
const RAW_JSON_PREVIEW_CHARS = 2_000_000; // beyond this the <pre> shows a preview; download has all

export async function render(root, { params, match, signal }) {
  const traceId = match[1].toLowerCase();
  const view = h('div', { class: 'trace-view' });
  root.append(view);
  showLoading(view, 'Loading trace…');

  let trace;
  try {
    trace = await getJSON(`/api/v1/traces/${traceId}`, {}, { signal });
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    if (err.status === 404) return showNotFound(view, traceId);
    return showError(view, err);
  }
  const model = buildModel(trace);
  if (model.spans.length === 0) {
    return showEmpty(view, 'This trace has no spans.', 'It may have been removed by retention.');
  }
  recordAttributeKeys(model);
  const traceView = new TraceView(view, traceId, trace, model, params.get('uiFind'), signal);
  // The analysis of a 50,000-span trace takes the server longer than the trace itself and its
  // answer is twice the size: asked for after the trace, so the two do not compete for the
  // server's cores, and added to the drawn waterfall when it arrives.
  getJSON(`/api/v1/traces/${traceId}/analysis`, {}, { signal })
    .catch((err) => ({ failed: err }))
    .then((answer) => { if (!signal.aborted) traceView.setAnalysis(answer); });
  return traceView.cleanup;
}

function showNotFound(view, traceId) {
  view.replaceChildren(h('div', { class: 'state error', role: 'alert', 'data-testid': 'error' },
    h('strong', {}, 'Trace not found. '),
    `No trace ${traceId} is stored: it may not have arrived yet, or retention removed it. `,
    h('a', { href: '/search' }, 'Search traces'), '.'));
}

// ---- the view ---------------------------------------------------------------------------

class TraceView {
  constructor(el, traceId, trace, model, uiFind, signal) {
    this.el = el;
    this.traceId = traceId;
    this.trace = trace;
    this.model = model;
    this.analysis = null; // until it arrives: {failed} or the answer
    this.signal = signal;
    const n = model.spans.length;
    this.collapsed = new Uint8Array(n);
    this.matched = new Uint8Array(n);
    this.matches = []; // span indices in tree order
    this.matchCursor = -1;
    this.visible = new Int32Array(n);
    this.visibleCount = 0;
    this.position = new Int32Array(n); // span index -> row, or -1
    this.selected = -1;
    this.detailOpen = false;
    this.showCritical = false;
    this.showErrorPath = false;
    this.serviceFilter = '';
    this.hideOthers = false;
    this.window = [0, Math.max(model.duration, 1)];
    this.drawn = ''; // the row range in the DOM, to skip redundant draws
    this.rowEls = new Map(); // span index -> its row element, reused while scrolling
    this.frame = 0;
    this.logs = null; // promise of the trace's logs, fetched when a detail is first opened
    this.blobUrl = null;

    this.build();
    this.computeVisible();
    this.drawRows(true);
    el.dataset.rendered = 'true'; // the minimap follows, when the ResizeObserver first reports

    const initial = uiFind ? model.byId.get(uiFind) : undefined;
    if (initial !== undefined) this.select(initial, { open: true, center: true });

    this.cleanup = () => {
      cancelAnimationFrame(this.frame);
      this.resize.disconnect();
      if (this.blobUrl) URL.revokeObjectURL(this.blobUrl);
    };
  }

  // -- layout ------------------------------------------------------------------------------

  build() {
    const { model } = this;
    this.findCount = h('span', { class: 'muted tv-find-count', 'aria-live': 'polite' });
    this.findInput = h('input', {
      type: 'search', placeholder: 'Find: operation, service, attribute…',
      'data-testid': 'trace-find', 'data-primary-input': true, 'aria-label': 'Find in trace',
      oninput: debounce(() => this.find(this.findInput.value), 150),
      onkeydown: (e) => {
        if (e.key === 'Enter') { e.preventDefault(); this.find(this.findInput.value); this.jump(e.shiftKey ? -1 : 1); }
        if (e.key === 'Escape') { this.findInput.value = ''; this.find(''); }
      },
    });
    const serviceSelect = h('select', {
      'aria-label': 'Service filter',
      onchange: () => { this.serviceFilter = serviceSelect.value; this.reshape(); },
    }, h('option', { value: '' }, 'All services'),
    [...model.services.keys()].sort().map((s) => h('option', { value: s }, s)));
    this.hideOthersBox = h('input', {
      type: 'checkbox',
      onchange: () => { this.hideOthers = this.hideOthersBox.checked; this.reshape(); },
    });
    // Usable before the analysis arrives: a pressed toggle applies when it does.
    this.criticalButton = h('button', {
      type: 'button', 'data-testid': 'toggle-critical-path', 'aria-pressed': 'false',
      title: 'Highlight the spans the request waited on',
      onclick: () => this.toggle('showCritical', this.criticalButton),
    }, 'Critical path');
    this.errorButton = h('button', {
      type: 'button', 'data-testid': 'toggle-error-path', 'aria-pressed': 'false',
      title: 'Highlight the path from the deepest error to the root',
      onclick: () => this.toggle('showErrorPath', this.errorButton),
    }, 'Error path');
    this.resetZoom = h('button', { type: 'button', hidden: true, onclick: () => this.zoom(0, model.duration) }, 'Reset zoom');

    const toolbar = h('div', { class: 'toolbar tv-toolbar' },
      this.findInput, this.findCount,
      h('button', { type: 'button', title: 'Previous match (Shift+Enter)', 'aria-label': 'Previous match', onclick: () => this.jump(-1) }, '↑'),
      h('button', { type: 'button', title: 'Next match (Enter)', 'aria-label': 'Next match', onclick: () => this.jump(1) }, '↓'),
      h('span', { class: 'tv-sep' }),
      serviceSelect, h('label', { class: 'inline' }, this.hideOthersBox, 'hide others'),
      h('span', { class: 'tv-sep' }),
      this.criticalButton, this.errorButton,
      h('span', { class: 'tv-sep' }),
      h('button', { type: 'button', onclick: () => this.collapseAll(true) }, 'Collapse all'),
      h('button', { type: 'button', onclick: () => this.collapseAll(false) }, 'Expand all'),
      this.resetZoom);

    this.rawPanel = h('div', { class: 'tv-raw', hidden: true });
    this.rows = h('div', { class: 'tv-rows', role: 'presentation' });
    this.scroller = h('div', {
      class: 'tv-scroll', tabindex: '0', role: 'tree', 'aria-label': 'Spans', 'data-scroll': true,
      onscroll: () => this.schedule(),
      onkeydown: (e) => this.onKey(e),
      onclick: (e) => this.onRowClick(e),
    }, this.rows);
    this.ruler = h('div', { class: 'tv-ruler' });
    this.detail = h('aside', {
      class: 'tv-detail', 'data-testid': 'span-detail', hidden: true, 'aria-label': 'Span detail',
      onkeydown: (e) => { if (e.key === 'Escape') this.closeDetail(); },
    });
    this.minimap = this.buildMinimap();

    this.el.replaceChildren(
      this.buildHeader(),
      this.minimap,
      toolbar,
      this.rawPanel,
      h('div', { class: 'tv-main' },
        h('div', { class: 'tv-waterfall' },
          h('div', { class: 'tv-colhead' },
            h('div', { class: 'tv-name-col' }, 'Service & operation'), this.ruler),
          this.scroller),
        this.detail));
    this.drawRuler();

    // Row heights are fixed; only the scroller's height matters for which rows to draw.
    this.viewportHeight = this.scroller.clientHeight || 600;
    this.resize = new ResizeObserver(() => {
      this.viewportHeight = this.scroller.clientHeight || 600;
      this.drawMinimap();
      this.schedule();
    });
    this.resize.observe(this.scroller);
    this.resize.observe(this.minimap);
  }

  buildHeader() {
    const { model, trace, traceId } = this;
    // The earliest span without a parent id; else (only orphans) the earliest orphan.
    const root = model.spans[model.roots.find((i) => !model.spans[i].parentId) ?? model.roots[0]];
    const startMs = model.startSec * 1e3 + model.startNs / 1e6;
    this.warnings = h('ul', { class: 'tv-warnings' });
    this.drawWarnings();
    const rawButton = h('button', { type: 'button', 'aria-expanded': 'false', onclick: () => this.toggleRaw(rawButton) }, 'Raw JSON');
    const download = h('a', {
      class: 'button-link', download: `trace-${traceId}.json`, href: '#',
      // The Blob is made on first use: stringifying 50,000 spans is not free.
      onclick: () => { download.href = this.rawUrl(); },
    }, 'Download JSON');
    const copy = h('button', { type: 'button', title: 'Copy trace id', onclick: () => copyText(copy, traceId) }, 'Copy id');
    return h('header', { class: 'tv-header', 'data-testid': 'trace-header' },
      h('div', { class: 'tv-title' },
        h('h1', {}, serviceChip(root.service), ' ', root.name),
        h('code', { class: 'muted' }, traceId), copy),
      h('dl', { class: 'tv-facts' },
        fact('Start', `${fmtTime(startMs)} (${fmtAgo(startMs)})`),
        fact('Duration', fmtDuration(model.duration)),
        fact('Services', String(model.services.size)),
        fact('Depth', String(model.maxDepth + 1)),
        fact('Spans', trace.returnedSpanCount && trace.returnedSpanCount < trace.spanCount
          ? `${model.spans.length} of ${trace.spanCount}` : String(model.spans.length)),
        fact('Errors', model.errors ? h('span', { class: 'badge error' }, String(model.errors)) : '0')),
      h('div', { class: 'tv-services' },
        [...model.services].sort((a, b) => b[1].spans - a[1].spans).map(([name, c]) =>
          serviceChip(name, c.errors ? `${c.spans} · ${c.errors} err` : String(c.spans)))),
      this.warnings,
      h('div', { class: 'tv-actions' },
        rawButton, download,
        h('a', { href: `/logs?query=${encodeURIComponent(`trace_id:${traceId}`)}` }, 'Logs of this trace'),
        h('a', { href: `/compare?a=${traceId}` }, 'Compare with…')));
  }

  drawWarnings() {
    const { model, analysis } = this;
    const orphans = model.roots.length - 1;
    const skewed = model.spans.filter((s) => s.skew).length;
    const warnings = [
      ...(this.trace.warnings ?? []),
      ...(orphans > 0 ? [`${orphans} span${orphans > 1 ? 's have' : ' has'} no parent in this trace (missing, or not arrived yet)`] : []),
      ...(skewed ? [`${skewed} span${skewed > 1 ? 's lie outside their parents' : ' lies outside its parent'}: `
        + 'probably clock skew between hosts (marked ⚠ below, with raw and adjusted times)'] : []),
      ...(analysis?.failed ? [`critical path, error path and clock skew unavailable: ${analysis.failed.message}`] : []),
    ];
    this.warnings.replaceChildren(...warnings.map((w) => h('li', {}, h('span', { class: 'badge warn' }, 'warning'), ' ', w)));
  }

  /** The analysis arrived (or failed): paths and skew markers join the drawn rows. */
  setAnalysis(answer) {
    this.analysis = answer;
    if (answer.failed) {
      for (const button of [this.criticalButton, this.errorButton]) {
        button.disabled = true;
        button.setAttribute('aria-pressed', 'false');
      }
      this.showCritical = false;
      this.showErrorPath = false;
    } else {
      applyAnalysis(this.model, answer);
      const steps = answer.errorPath?.length ?? 0;
      this.errorButton.textContent = steps ? `Error path (${steps})` : 'Error path (none)';
    }
    this.el.dataset.analysis = answer.failed ? 'failed' : 'ready';
    this.drawWarnings();
    this.redraw();
    if (this.detailOpen && this.selected >= 0) this.openDetail(this.selected);
  }

  buildMinimap() {
    this.canvas = h('canvas', { 'aria-hidden': 'true' });
    this.mmWindow = h('div', { class: 'tv-mm-window' });
    this.mmRows = h('div', { class: 'tv-mm-rows' });
    this.mmSelect = h('div', { class: 'tv-mm-select', hidden: true });
    const box = h('div', {
      class: 'tv-minimap', 'data-testid': 'minimap',
      title: 'Drag to zoom into a time range; click to scroll to a span',
    }, this.canvas, this.mmWindow, this.mmRows, this.mmSelect);
    // Drag: zoom into the dragged time range. Click: scroll the waterfall to that row.
    box.addEventListener('pointerdown', (down) => {
      const rect = box.getBoundingClientRect();
      const x0 = down.clientX - rect.left;
      box.setPointerCapture(down.pointerId);
      const move = (e) => {
        const x1 = Math.min(Math.max(e.clientX - rect.left, 0), rect.width);
        Object.assign(this.mmSelect.style, { left: `${Math.min(x0, x1)}px`, width: `${Math.abs(x1 - x0)}px` });
        this.mmSelect.hidden = Math.abs(x1 - x0) < 3;
      };
      const up = (e) => {
        box.removeEventListener('pointermove', move);
        box.removeEventListener('pointerup', up);
        this.mmSelect.hidden = true;
        const x1 = Math.min(Math.max(e.clientX - rect.left, 0), rect.width);
        if (Math.abs(x1 - x0) >= 3) {
          const t = (x) => (x / rect.width) * this.model.duration;
          this.zoom(t(Math.min(x0, x1)), t(Math.max(x0, x1)));
        } else {
          const row = Math.floor(((e.clientY - rect.top) / rect.height) * this.visibleCount);
          this.scroller.scrollTop = Math.max(0, row * ROW_HEIGHT - this.viewportHeight / 2);
        }
      };
      box.addEventListener('pointermove', move);
      box.addEventListener('pointerup', up);
    });
    return box;
  }

  // -- tree shape --------------------------------------------------------------------------

  /** The rows to show: depth-first, skipping collapsed subtrees and filtered-out spans. */
  computeVisible() {
    const { spans, roots } = this.model;
    const hide = this.hideOthers && this.serviceFilter;
    const stack = [];
    for (let r = roots.length - 1; r >= 0; r--) stack.push(roots[r]);
    let count = 0;
    this.position.fill(-1);
    while (stack.length) {
      const i = stack.pop();
      const span = spans[i];
      if (!hide || span.service === this.serviceFilter) {
        this.position[i] = count;
        this.visible[count++] = i;
      }
      const kids = span.children;
      if (kids && !this.collapsed[i]) for (let k = kids.length - 1; k >= 0; k--) stack.push(kids[k]);
    }
    this.visibleCount = count;
    this.rows.style.height = `${count * ROW_HEIGHT}px`;
  }

  reshape() {
    this.computeVisible();
    this.drawMinimap();
    this.redraw();
  }

  setCollapsed(i, value) {
    if (!this.model.spans[i].children || this.collapsed[i] === value) return;
    this.collapsed[i] = value;
    this.reshape();
  }

  collapseAll(value) {
    const { spans } = this.model;
    for (let i = 0; i < spans.length; i++) this.collapsed[i] = value && spans[i].children ? 1 : 0;
    this.reshape();
    if (this.selected >= 0 && this.position[this.selected] < 0) this.select(this.visible[0]);
  }

  /** Expands the ancestors of span `i` so it has a row. */
  reveal(i) {
    let changed = false;
    for (let p = this.model.spans[i].parent; p >= 0; p = this.model.spans[p].parent) {
      if (this.collapsed[p]) { this.collapsed[p] = 0; changed = true; }
    }
    if (this.hideOthers && this.serviceFilter && this.model.spans[i].service !== this.serviceFilter) {
      this.hideOthers = false;
      this.hideOthersBox.checked = false;
      changed = true;
    }
    if (changed) this.reshape();
  }

  // -- drawing -----------------------------------------------------------------------------

  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => { this.frame = 0; this.drawRows(); });
  }

  /** Rebuilds every row at once: the tree's shape, the time window or the analysis changed. */
  redraw() {
    this.rowEls.clear();
    this.drawRows(true);
  }

  /** Updates the classes of the rows in the DOM at once: selection, highlights, filters. */
  restyle() {
    for (const [i, el] of this.rowEls) {
      el.className = this.rowClass(i);
      el.setAttribute('aria-selected', String(i === this.selected));
    }
  }

  drawRows(force = false) {
    const top = this.scroller.scrollTop;
    const first = Math.max(0, Math.floor(top / ROW_HEIGHT) - OVERSCAN);
    const last = Math.min(this.visibleCount, Math.ceil((top + this.viewportHeight) / ROW_HEIGHT) + OVERSCAN);
    const key = `${first}:${last}`;
    if (!force && key === this.drawn) { this.drawScrollWindow(top); return; }
    this.drawn = key;
    const next = new Map();
    for (let r = first; r < last; r++) {
      const i = this.visible[r];
      next.set(i, this.rowEls.get(i) ?? this.row(i, r));
    }
    this.rowEls = next;
    this.rows.replaceChildren(...next.values());
    this.drawScrollWindow(top); // the scroll position read before the DOM changed: no forced layout
  }

  rowClass(i) {
    const span = this.model.spans[i];
    let c = 'span-row';
    if (i === this.selected) c += ' selected';
    if (this.showCritical && span.critical) c += ' critical';
    if (this.showErrorPath && span.onErrorPath) c += ' error-path';
    if (this.matched[i]) c += ' match';
    if (this.serviceFilter && span.service !== this.serviceFilter) c += ' dim';
    if (span.error) c += ' is-error';
    return c;
  }

  row(i, r) {
    const { model } = this;
    const span = model.spans[i];
    const [w0, w1] = this.window;
    const pct = (t) => ((t - w0) / (w1 - w0)) * 100;
    const color = serviceColor(span.service);

    const left = pct(span.start);
    const width = Math.max(pct(span.end) - left, 0);
    const bar = h('div', { class: 'tv-bar', style: `left:${left}%;width:${width}%` });
    const inBar = (t) => (span.end > span.start ? ((t - span.start) / (span.end - span.start)) * 100 : 0);
    const segments = span.children ? selfSegments(model, span) : null;
    if (segments && segments.length <= MAX_TICKS_PER_BAR) {
      // Self time is the darker part: the bar is faint where children cover it.
      bar.classList.add('has-children');
      for (const [a, b] of segments) {
        bar.append(h('i', { class: 'tv-self', style: `left:${inBar(a)}%;width:${inBar(b) - inBar(a)}%` }));
      }
    }
    // Always drawn, shown by CSS while the row has the class `critical`.
    if (span.critical) {
      for (const [a, b] of span.critical) {
        bar.append(h('i', { class: 'tv-crit', style: `left:${inBar(a)}%;width:${Math.max(inBar(b) - inBar(a), 0.5)}%` }));
      }
    }
    const events = span.raw.events ?? [];
    for (const ev of events.slice(0, MAX_TICKS_PER_BAR)) {
      const t = model.rel(ev.timeUnixNano);
      bar.append(h('i', { class: 'tv-event', style: `left:${inBar(t)}%`, title: `${ev.name} at +${fmtDuration(t - span.start)}` }));
    }
    // The duration goes after the bar, else before it, else inside its end.
    const place = left + width <= 75 ? ['', `left:${left + width}%`]
      : left >= 15 ? [' before', `right:${100 - left}%`]
        : [' inside', `right:${Math.max(100 - left - width, 0)}%`];
    const label = h('span', { class: `tv-dur${place[0]}`, style: place[1] }, fmtDuration(span.end - span.start));
    let skew = null;
    if (span.skew) {
      skew = h('span', { class: 'tv-skew', title: skewText(span) }, '⚠ skew');
      label.append(' ', skew);
    }
    const ghost = span.skew ? h('div', {
      class: 'tv-ghost',
      style: `left:${pct(span.skew.adjustedStart)}%;width:${width}%`,
      title: `adjusted start +${fmtDuration(span.skew.adjustedStart)}`,
    }) : null;

    const kids = span.children;
    const toggle = kids
      ? h('button', {
        type: 'button', class: 'tv-toggle', tabindex: '-1', dataset: { toggle: i },
        'aria-label': this.collapsed[i] ? 'Expand' : 'Collapse',
      }, this.collapsed[i] ? '▸' : '▾')
      : h('span', { class: 'tv-toggle leaf' });
    return h('div', {
      class: this.rowClass(i), id: `span-${span.id}`, role: 'treeitem',
      'aria-level': span.depth + 1, 'aria-selected': String(i === this.selected),
      'aria-expanded': kids ? String(!this.collapsed[i]) : null,
      'data-testid': 'span-row', dataset: { spanId: span.id, index: i },
      style: `top:${r * ROW_HEIGHT}px;--c:${color}`,
    },
    h('div', { class: 'tv-name-col', style: `padding-left:${Math.min(span.depth, 40) * 12 + 4}px` },
      toggle,
      h('span', { class: 'tv-svc' }, span.service),
      h('span', { class: 'tv-op', title: `${span.service}: ${span.name}` }, span.name),
      kids && this.collapsed[i] ? h('span', { class: 'muted tv-hidden-count' }, `+${descendants(model, span)}`) : null,
      span.error ? h('span', { class: 'tv-err', title: span.raw.status?.message || 'error' }, '!') : null),
    h('div', { class: 'tv-time-col' }, ghost, bar, label));
  }

  drawRuler() {
    const [w0, w1] = this.window;
    const ticks = [];
    for (let k = 0; k <= 4; k++) {
      ticks.push(h('span', { class: 'tv-tick', style: `left:${k * 25}%` }, fmtDuration(w0 + ((w1 - w0) * k) / 4)));
    }
    this.ruler.replaceChildren(...ticks);
  }

  drawMinimap() {
    const { canvas, model } = this;
    const width = this.minimap.clientWidth || 800;
    const height = this.minimap.clientHeight || 48;
    const ratio = window.devicePixelRatio || 1;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    const ctx = canvas.getContext('2d');
    ctx.scale(ratio, ratio);
    const rows = Math.max(this.visibleCount, 1);
    const rowH = Math.max(height / rows, 1);
    const scale = width / Math.max(model.duration, 1);
    let fill = '';
    for (let r = 0; r < this.visibleCount; r++) {
      const span = model.spans[this.visible[r]];
      const color = serviceColor(span.service);
      if (color !== fill) { ctx.fillStyle = color; fill = color; }
      ctx.fillRect(span.start * scale, (r / rows) * height, Math.max((span.end - span.start) * scale, 1), rowH);
    }
    const [w0, w1] = this.window;
    const zoomed = w0 > 0 || w1 < model.duration;
    this.mmWindow.hidden = !zoomed;
    Object.assign(this.mmWindow.style, { left: `${(w0 / model.duration) * 100}%`, width: `${((w1 - w0) / model.duration) * 100}%` });
    this.drawScrollWindow(this.scroller.scrollTop);
  }

  /** The band of the minimap that the waterfall shows. */
  drawScrollWindow(scrollTop) {
    const rows = Math.max(this.visibleCount, 1);
    const first = scrollTop / ROW_HEIGHT;
    const shown = this.viewportHeight / ROW_HEIGHT;
    Object.assign(this.mmRows.style, {
      top: `${Math.min(first / rows, 1) * 100}%`,
      height: `${Math.min(shown / rows, 1) * 100}%`,
    });
  }

  zoom(from, to) {
    this.window = [from, Math.max(to, from + 1)];
    this.resetZoom.hidden = from <= 0 && to >= this.model.duration;
    this.drawRuler();
    this.drawMinimap();
    this.redraw();
  }

  toggle(flag, button) {
    this[flag] = !this[flag];
    button.setAttribute('aria-pressed', String(this[flag]));
    this.restyle();
  }

  // -- selection, keyboard -----------------------------------------------------------------

  onRowClick(e) {
    const toggle = e.target.closest('[data-toggle]');
    if (toggle) {
      const i = Number(toggle.dataset.toggle);
      this.setCollapsed(i, this.collapsed[i] ? 0 : 1);
      return;
    }
    const row = e.target.closest('.span-row');
    if (!row) return;
    this.select(Number(row.dataset.index), { open: true });
    this.scroller.focus({ preventScroll: true });
  }

  select(i, { open = this.detailOpen, center = false } = {}) {
    if (i === undefined || i < 0) return;
    this.reveal(i);
    this.selected = i;
    this.scrollToRow(this.position[i], center);
    this.scroller.setAttribute('aria-activedescendant', `span-${this.model.spans[i].id}`);
    if (open) this.openDetail(i);
    this.restyle();
  }

  scrollToRow(r, center) {
    if (r < 0) return;
    const y = r * ROW_HEIGHT;
    const top = this.scroller.scrollTop;
    if (center) this.scroller.scrollTop = Math.max(0, y - this.viewportHeight / 2);
    else if (y < top) this.scroller.scrollTop = y;
    else if (y + ROW_HEIGHT > top + this.viewportHeight) this.scroller.scrollTop = y + ROW_HEIGHT - this.viewportHeight;
  }

  onKey(e) {
    const { spans } = this.model;
    const i = this.selected;
    const r = i >= 0 ? this.position[i] : -1;
    const at = (row) => this.visible[Math.min(Math.max(row, 0), this.visibleCount - 1)];
    const page = Math.max(1, Math.floor(this.viewportHeight / ROW_HEIGHT) - 1);
    const keys = {
      ArrowDown: () => this.select(at(r + 1)), j: () => this.select(at(r + 1)),
      ArrowUp: () => this.select(at(r < 0 ? 0 : r - 1)), k: () => this.select(at(r < 0 ? 0 : r - 1)),
      PageDown: () => this.select(at(r + page)), PageUp: () => this.select(at(r - page)),
      Home: () => this.select(at(0)), End: () => this.select(at(this.visibleCount - 1)),
      ArrowLeft: () => {
        if (i < 0) return;
        if (spans[i].children && !this.collapsed[i]) this.setCollapsed(i, 1);
        else if (spans[i].parent >= 0) this.select(spans[i].parent);
      },
      ArrowRight: () => {
        if (i < 0) return;
        if (this.collapsed[i]) this.setCollapsed(i, 0);
        else if (spans[i].children) this.select(spans[i].children[0]);
      },
      Enter: () => this.select(i < 0 ? at(0) : i, { open: true }),
      Escape: () => this.closeDetail(),
    };
    const action = keys[e.key];
    if (!action || e.metaKey || e.ctrlKey || e.altKey) return;
    e.preventDefault();
    action();
  }

  // -- in-trace search ---------------------------------------------------------------------

  find(text) {
    const needle = text.trim().toLowerCase();
    if (needle === this.needle) return; // Enter after typing: keep the place in the matches
    this.needle = needle;
    const { spans } = this.model;
    this.matched.fill(0);
    this.matches = [];
    this.matchCursor = -1;
    if (needle) {
      // Tree order, so Enter walks the matches top to bottom.
      const stack = [...this.model.roots].reverse();
      while (stack.length) {
        const i = stack.pop();
        const span = spans[i];
        span.searchText ??= searchTextOf(span);
        if (span.searchText.includes(needle)) { this.matched[i] = 1; this.matches.push(i); }
        const kids = span.children;
        if (kids) for (let k = kids.length - 1; k >= 0; k--) stack.push(kids[k]);
      }
    }
    const n = this.matches.length;
    this.findCount.textContent = needle ? `${n} match${n === 1 ? '' : 'es'}` : '';
    this.restyle();
  }

  jump(step) {
    const n = this.matches.length;
    if (!n) return;
    this.matchCursor = (this.matchCursor + step + n) % n;
    this.findCount.textContent = `${this.matchCursor + 1} of ${n} matches`;
    this.select(this.matches[this.matchCursor], { center: true });
  }

  // -- detail panel ------------------------------------------------------------------------

  openDetail(i) {
    this.detailOpen = true;
    this.detail.hidden = false;
    const span = this.model.spans[i];
    setParams({ uiFind: span.id });
    this.detail.replaceChildren(...renderDetail(this.model, span, {
      close: () => this.closeDetail(),
      goTo: (target) => {
        this.select(target, { open: true, center: true });
        this.scroller.focus({ preventScroll: true }); // the clicked button was replaced
      },
    }));
    const logsBox = this.detail.querySelector('[data-testid="span-logs"]');
    this.logs ??= getJSON(`/api/v1/traces/${this.traceId}/logs`, {}, { signal: this.signal });
    this.logs.then((answer) => {
      if (this.selected === i) fillLogs(logsBox, answer, span, this.traceId);
    }, (err) => {
      if (err.name !== 'AbortError') showError(logsBox, err);
    });
  }

  closeDetail() {
    this.detailOpen = false;
    this.detail.hidden = true;
    setParams({});
    this.scroller.focus({ preventScroll: true });
  }

  // -- raw JSON ----------------------------------------------------------------------------

  rawUrl() {
    this.blobUrl ??= URL.createObjectURL(new Blob([JSON.stringify(this.trace, null, 2)], { type: 'application/json' }));
    return this.blobUrl;
  }

  toggleRaw(button) {
    const open = this.rawPanel.hidden;
    this.rawPanel.hidden = !open;
    button.setAttribute('aria-expanded', String(open));
    if (open && !this.rawPanel.firstChild) {
      const text = JSON.stringify(this.trace, null, 2);
      const cut = text.length > RAW_JSON_PREVIEW_CHARS;
      this.rawPanel.append(
        cut ? h('p', { class: 'muted' }, `The first ${RAW_JSON_PREVIEW_CHARS.toLocaleString()} of `
          + `${text.length.toLocaleString()} characters; download the JSON for all of it.`) : null,
        h('pre', { 'data-testid': 'raw-json', tabindex: '0' }, cut ? text.slice(0, RAW_JSON_PREVIEW_CHARS) : text));
    }
  }
}

function fact(name, value) {
  return h('div', {}, h('dt', {}, name), h('dd', {}, value));
}

/** How many spans a collapsed row hides (counted once per span). */
function descendants(model, span) {
  if (span.descendants !== undefined) return span.descendants;
  let count = 0;
  const stack = [span];
  while (stack.length) {
    for (const k of stack.pop().children ?? []) {
      count += 1;
      stack.push(model.spans[k]);
    }
  }
  span.descendants = count;
  return count;
}


function searchTextOf(span) {
  const parts = [span.name, span.service, span.id];
  for (const kv of span.raw.attributes ?? []) parts.push(`${kv.key}=${valueText(anyValue(kv.value))}`);
  return parts.join('\n').toLowerCase();
}

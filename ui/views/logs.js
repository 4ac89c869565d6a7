// Logs explorer over `/api/v1/logs`: a query box with field autocompletion, a volume histogram
// by severity (drag across it to zoom), results newest first with cursor paging, expandable
// records whose values refine the query, pivots to the trace and the correlation id, and a live
// tail over Server-Sent Events.

import { setParams } from '../app.js';
import {
  h, svg, getJSON, showLoading, showError, showEmpty, noDataYet, rangeFromParams, rfc3339,
  LOOKBACKS, toLocalInput, parseInstant, serviceChip, fmtTime, nsToMs, debounce,
} from '../util.js';
import { fmtNumber } from '../chart.js';

const PAGE = 100;
/** Rows kept on the page while tailing; older ones are dropped (and reachable by paging). */
const MAX_ROWS = 2000;
/** Stacking order, bottom first: the severities that matter most sit on the axis. */
const SEVERITIES = ['FATAL', 'ERROR', 'WARN', 'INFO', 'DEBUG', 'TRACE', 'UNSPECIFIED'];

/** `field:value` as the query syntax reads it: strings quoted, numbers and booleans bare. */
function term(field, value) {
  const text = typeof value === 'string' ? JSON.stringify(value) : String(value);
  return `${field}:${text}`;
}

/** Adds `extra` to `query` as one more condition (bracketing a query that has OR in it). */
function refine(query, extra) {
  const q = query.trim();
  if (!q) return extra;
  return /\bOR\b/.test(q) ? `(${q}) AND ${extra}` : `${q} AND ${extra}`;
}

/** [queryName, value] pairs of a JSON object, nested objects by dotted path. */
function flatten(object, prefix = '') {
  return Object.entries(object ?? {}).flatMap(([key, value]) => (
    value && typeof value === 'object' && !Array.isArray(value)
      ? flatten(value, `${prefix}${key}.`)
      : [[`${prefix}${key}`, value]]));
}

/** A body that is a JSON object, or a string holding one (as the demo's loggers write), as that
 *  object; else null. */
function bodyObject(body) {
  if (typeof body === 'string' && body.startsWith('{')) {
    try { body = JSON.parse(body); } catch { return null; }
  }
  return body && typeof body === 'object' && !Array.isArray(body) ? body : null;
}

/** The one-line body of a row: a structured body's message first, its other fields after. */
function bodyLine(body) {
  const object = bodyObject(body);
  const message = object?.message ?? object?.msg;
  if (typeof message !== 'string') {
    return typeof body === 'string' ? body : body === null ? '' : JSON.stringify(body);
  }
  const rest = Object.entries(object).filter(([k]) => !['message', 'msg', 'level'].includes(k))
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ');
  return [message, ' ', h('span', { class: 'muted' }, rest)];
}

export async function render(root, { params, signal }) {
  const state = {
    query: params.get('query') ?? params.get('q') ?? '',
    lookback: params.get('lookback') || (params.get('start') ? 'custom' : '1h'),
    range: rangeFromParams(params, '1h'),
    cursor: null,
    pivot: null, // {key, value, trace}: the correlation id the results were pivoted to
  };
  let tail = null; // {source, lastId, count}
  let histogramCleanup = null;
  let runId = 0;

  // ---- toolbar ----
  const input = h('input', {
    type: 'search', class: 'logs-query mono', 'data-testid': 'logs-query', 'data-primary-input': true,
    value: state.query, spellcheck: 'false', autocomplete: 'off', role: 'combobox',
    'aria-autocomplete': 'list', 'aria-expanded': 'false', 'aria-controls': 'logs-suggest',
    'aria-label': 'Log query', placeholder: 'severity:error AND service:checkout, "connection refused", orderId:order-7*',
  });
  const suggestList = h('ul', { id: 'logs-suggest', class: 'suggest', role: 'listbox', hidden: true });
  const queryHint = h('div', { class: 'query-hint', 'aria-live': 'polite' });
  const lookbackSel = h('select', { 'aria-label': 'Time range' },
    LOOKBACKS.map(([v, text]) => h('option', { value: v, selected: v === state.lookback }, v === 'custom' ? text : `Last ${text}`)));
  const startInput = h('input', { type: 'datetime-local', 'aria-label': 'From', value: toLocalInput(state.range[0]) });
  const endInput = h('input', { type: 'datetime-local', 'aria-label': 'To', value: toLocalInput(state.range[1]) });
  const customBox = h('span', { class: 'custom-range', hidden: state.lookback !== 'custom' }, startInput, '–', endInput);
  const tailButton = h('button', {
    type: 'button', 'data-testid': 'logs-tail', 'aria-pressed': 'false',
    title: 'Show new matching logs as they arrive', onclick: () => (tail ? stopTail() : startTail()),
  }, '● Live tail');
  const form = h('form', { class: 'logs-form', onsubmit: (e) => { e.preventDefault(); closeSuggest(); submit(); } },
    h('div', { class: 'logs-query-line' },
      h('div', { class: 'suggest-anchor' }, input, suggestList),
      h('button', { type: 'submit', class: 'primary', 'data-testid': 'logs-submit' }, 'Search')),
    queryHint,
    h('div', { class: 'toolbar' }, lookbackSel, customBox, tailButton));

  const histogramEl = h('div', { class: 'logs-histogram', 'data-testid': 'logs-histogram' });
  const banner = h('div', { class: 'logs-banner' });
  const tailStatus = h('div', { class: 'tail-status', 'aria-live': 'polite' });
  const results = h('div', { class: 'logs-results' });
  root.append(h('div', { class: 'view-explore view-logs' }, form, histogramEl, banner, tailStatus, results));

  lookbackSel.addEventListener('change', () => {
    state.lookback = lookbackSel.value;
    customBox.hidden = state.lookback !== 'custom';
    if (state.lookback !== 'custom') submit();
  });
  for (const el of [startInput, endInput]) el.addEventListener('change', () => submit());

  /** Reads the form into the state and searches; `pivot` when it is a correlation-id pivot. */
  function submit(pivot = null) {
    state.pivot = pivot;
    state.query = input.value;
    if (state.lookback === 'custom') {
      state.range = [parseInstant(startInput.value) ?? state.range[0], parseInstant(endInput.value) ?? Date.now()];
    } else {
      state.range = rangeFromParams(new URLSearchParams({ lookback: state.lookback }));
    }
    run();
  }

  /** Sets the query (and pivot) from a click on a value, and searches. */
  function setQuery(text, pivot = null) {
    input.value = text;
    submit(pivot);
    window.scrollTo?.(0, 0);
    input.focus();
  }

  function zoomTo(start, end) {
    state.lookback = 'custom';
    lookbackSel.value = 'custom';
    customBox.hidden = false;
    startInput.value = toLocalInput(start);
    endInput.value = toLocalInput(end);
    state.range = [start, end];
    run();
  }

  // ---- search ----
  async function run() {
    const id = ++runId;
    const [start, end] = state.range;
    setParams(state.lookback === 'custom'
      ? { query: state.query, lookback: 'custom', start: Math.round(start), end: Math.round(end) }
      : { query: state.query, lookback: state.lookback });
    queryHint.replaceChildren();
    state.cursor = null;
    showLoading(results, 'Searching logs…');
    const q = { query: state.query, start: rfc3339(start), end: rfc3339(end) };
    const histogram = getJSON('/api/v1/logs/histogram', q, { signal })
      .then((hist) => {
        if (id !== runId) return;
        histogramCleanup?.();
        histogramCleanup = drawHistogram(histogramEl, hist, state.range, zoomTo);
      })
      .catch(() => { if (id === runId) histogramEl.replaceChildren(); });
    try {
      const page = await getJSON('/api/v1/logs', { ...q, limit: PAGE }, { signal });
      if (id !== runId) return;
      showPage(page, false);
      drawBanner(page.data);
    } catch (err) {
      if (err.name === 'AbortError' || id !== runId) return;
      showQueryError(err);
    }
    await histogram;
    if (tail) startTail(); // the tail follows the new query
  }

  function showQueryError(err) {
    showError(results, err);
    // The server says where the query went wrong: "... at position 12: ..."; point at it.
    const m = /at position (\d+)/.exec(err.message ?? '');
    if (!m) return;
    const pos = Math.min(Number(m[1]), state.query.length);
    queryHint.replaceChildren(h('code', { class: 'query-caret' },
      state.query.slice(0, pos), h('mark', {}, state.query.slice(pos, pos + 1) || ' '), state.query.slice(pos + 1)));
    input.focus();
    input.setSelectionRange(pos, Math.min(pos + 1, input.value.length));
  }

  function showPage(page, append) {
    let list = results.querySelector('.log-list');
    if (!append || !list) {
      if (!page.data.length) {
        const range = state.lookback === 'custom' ? 'in this time range' : `in the last ${LOOKBACKS.find(([v]) => v === state.lookback)?.[1] ?? state.lookback}`;
        if (state.query.trim()) {
          showEmpty(results, `No logs match this query ${range}.`, 'Widen the time range, or loosen the query (terms without an operator must all match).');
        } else {
          showEmpty(results, `No logs ${range}.`, ...noDataYet('logs'));
        }
        return;
      }
      list = h('ol', { class: 'log-list' });
      results.replaceChildren(list);
    }
    list.append(...page.data.map((rec) => logRow(rec)));
    state.cursor = page.nextCursor;
    results.querySelector('.more')?.remove();
    if (state.cursor) {
      const more = h('button', {
        type: 'button', class: 'more', 'data-testid': 'logs-more',
        onclick: async () => {
          more.disabled = true;
          more.textContent = 'Loading…';
          try {
            const next = await getJSON('/api/v1/logs', {
              query: state.query, start: rfc3339(state.range[0]), end: rfc3339(state.range[1]), limit: PAGE, cursor: state.cursor,
            }, { signal });
            showPage(next, true);
          } catch (err) {
            if (err.name !== 'AbortError') { more.disabled = false; more.textContent = `Load older (failed: ${err.message})`; }
          }
        },
      }, 'Load older');
      results.append(more);
    }
  }

  /** After a correlation-id pivot: the id, and the trace it belongs to. */
  function drawBanner(records) {
    const p = state.pivot;
    if (!p) { banner.replaceChildren(); return; }
    const trace = p.trace ?? records.find((r) => r.links?.ui)?.links.ui;
    banner.replaceChildren(h('div', { class: 'state pivot-note', role: 'note' },
      `All logs with ${p.key} `, h('code', {}, p.value), ` (${records.length}${state.cursor ? '+' : ''}). `,
      trace ? h('a', { href: trace }, 'View the linked trace') : 'No trace is linked to it.'));
  }

  // ---- one record ----
  function logRow(rec, fresh = false) {
    const detail = h('div', { class: 'log-detail', hidden: true });
    const row = h('li', {
      class: `log-row sev-row-${rec.severity}${fresh ? ' fresh' : ''}`, 'data-testid': 'log-row', 'data-id': rec.id,
      'data-cursor': rec.cursor,
    });
    const toggle = () => {
      const open = detail.hidden;
      if (open && !detail.firstChild) detail.append(...recordDetail(rec).filter(Boolean));
      detail.hidden = !open;
      line.setAttribute('aria-expanded', String(open));
    };
    const line = h('div', {
      class: 'log-line', tabindex: 0, role: 'button', 'aria-expanded': 'false',
      onclick: (e) => { if (!e.target.closest('a, button')) toggle(); },
      onkeydown: (e) => { if ((e.key === 'Enter' || e.key === ' ') && e.target === line) { e.preventDefault(); toggle(); } },
    },
    h('time', { class: 'log-time mono', datetime: rec.time }, fmtTime(nsToMs(rec.timeUnixNano !== '0' ? rec.timeUnixNano : rec.observedTimeUnixNano))),
    h('span', { class: `badge sev sev-${rec.severity}`, title: `${rec.severityText || rec.severity} (${rec.severityNumber})` }, rec.severity),
    serviceChip(rec.service),
    h('span', { class: 'log-body mono' }, bodyLine(rec.body)),
    rec.links?.ui ? h('a', {
      class: 'log-trace-link', 'data-testid': 'log-trace-link', href: rec.links.ui,
      title: rec.links.linkedBy ? `Trace found by its ${rec.links.linkedBy}` : 'The trace of this log',
    }, rec.links.linkedBy ? 'trace ⇢' : 'trace →') : null);
    row.append(line, detail);
    return row;
  }

  function recordDetail(rec) {
    const value = (field, v) => h('button', {
      type: 'button', class: 'field-value mono', title: `Add ${term(field, v)} to the query`,
      onclick: () => setQuery(refine(input.value, term(field, v))),
    }, typeof v === 'string' ? v : JSON.stringify(v));
    const table = (title, pairs) => (pairs.length ? h('section', {},
      h('h4', {}, title),
      h('table', { class: 'kv' }, h('tbody', {}, pairs.map(([k, v]) => h('tr', {}, h('td', {}, k), h('td', {}, value(k, v))))))) : null);
    const ids = [
      ['severity', rec.severity], ['service', rec.service],
      rec.traceId ? ['trace_id', rec.traceId] : null, rec.spanId ? ['span_id', rec.spanId] : null,
      rec.scope?.name ? ['scope', rec.scope.name] : null,
    ].filter(Boolean);
    const correlation = Object.entries(rec.correlationIds ?? {});
    const fieldsOfBody = bodyObject(rec.body);
    return [
      h('div', { class: 'log-actions' },
        rec.links?.ui ? h('a', { href: rec.links.ui }, rec.links.linkedBy ? `Trace (found by ${rec.links.linkedBy})` : 'Trace') : null,
        correlation.map(([key, v]) => h('button', {
          type: 'button', onclick: () => setQuery(term(key, v), { key, value: v, trace: rec.links?.ui }),
        }, `All logs of this ${key}`))),
      fieldsOfBody ? null : h('pre', { class: 'log-full-body' }, typeof rec.body === 'string' ? rec.body : JSON.stringify(rec.body, null, 2)),
      table('Record', ids),
      table('Attributes', flatten(rec.attributes)),
      fieldsOfBody ? table('Body fields', flatten(fieldsOfBody)) : null,
      table('Resource', flatten(rec.resource, 'resource.')),
      h('details', { class: 'raw' }, h('summary', {}, 'JSON'), h('pre', {}, JSON.stringify(rec, null, 2))),
    ];
  }

  // ---- live tail ----
  function startTail(after = null) {
    tail?.source.close();
    const url = new URL('/api/v1/logs/tail', location.origin);
    if (state.query.trim()) url.searchParams.set('query', state.query);
    if (after) url.searchParams.set('after', after);
    const source = new EventSource(url);
    tail = { source, lastId: after, count: 0 };
    tailButton.setAttribute('aria-pressed', 'true');
    tailStatus.replaceChildren(h('span', { class: 'live-dot', 'aria-hidden': 'true' }), 'Live: waiting for new logs…');
    source.addEventListener('log', (e) => {
      const rec = JSON.parse(e.data);
      tail.lastId = e.lastEventId || rec.id;
      tail.count += 1;
      let list = results.querySelector('.log-list');
      if (!list) {
        list = h('ol', { class: 'log-list' });
        results.replaceChildren(list);
      }
      list.prepend(logRow(rec, true));
      while (list.children.length > MAX_ROWS) list.lastElementChild.remove();
      state.cursor = list.lastElementChild.dataset.cursor; // "load older" continues below the last row
      tailStatus.replaceChildren(h('span', { class: 'live-dot', 'aria-hidden': 'true' }), `Live: ${tail.count} new log${tail.count === 1 ? '' : 's'}`);
    });
    // The server ends a tail that falls too far behind (or whose query fails) with `end`;
    // EventSource would reconnect on its own, from "now", silently losing records: close it and
    // offer to resume after the last record received instead.
    const stopped = (message) => {
      source.close();
      const lastId = tail?.lastId;
      tail = null;
      tailButton.setAttribute('aria-pressed', 'false');
      tailStatus.replaceChildren(h('div', { class: 'state warn-note', role: 'alert' },
        h('strong', {}, 'Live tail stopped: '), message, ' ',
        h('button', { type: 'button', onclick: () => startTail(lastId) }, lastId ? 'Resume from the last log' : 'Resume')));
    };
    source.addEventListener('end', (e) => {
      let message = 'the server ended the stream';
      try { message = JSON.parse(e.data).message ?? message; } catch { /* no data */ }
      stopped(message);
    });
    source.addEventListener('error', () => {
      if (tail?.source === source) stopped('the connection to the server was lost.');
    });
  }

  function stopTail() {
    tail?.source.close();
    tail = null;
    tailButton.setAttribute('aria-pressed', 'false');
    tailStatus.replaceChildren();
  }

  // ---- autocomplete ----
  let fields = null; // [{name, type, topValues}], loaded on first use
  let options = [];
  let active = -1;

  async function loadFields() {
    if (fields) return;
    fields = [];
    try {
      const data = (await getJSON('/api/v1/logs/fields', { values: 20 }, { signal })).data;
      // A name can be both an attribute and a body field: offer it once.
      fields = [...new Map(data.map((f) => [f.name, f])).values()];
    } catch { /* autocomplete is a help, not a requirement */ }
  }

  /** The token under the caret: `name`, or `name:valueprefix`. */
  function currentToken() {
    const before = input.value.slice(0, input.selectionStart ?? input.value.length);
    const m = /[^\s()]*$/.exec(before);
    return { text: m[0].replace(/^[-+]/, ''), start: before.length - m[0].length + (/^[-+]/.test(m[0]) ? 1 : 0) };
  }

  function suggest() {
    if (!fields?.length) return closeSuggest();
    const { text } = currentToken();
    const colon = text.indexOf(':');
    if (colon < 0) {
      const prefix = text.toLowerCase();
      if (!prefix || ['and', 'or', 'not'].includes(prefix)) return closeSuggest();
      options = fields.filter((f) => f.name.toLowerCase().includes(prefix))
        .sort((a, b) => a.name.toLowerCase().indexOf(prefix) - b.name.toLowerCase().indexOf(prefix))
        .slice(0, 12).map((f) => ({ label: f.name, hint: f.type, insert: `${f.name}:` }));
    } else {
      const name = text.slice(0, colon);
      const prefix = text.slice(colon + 1).replace(/^"/, '').toLowerCase();
      const field = fields.find((f) => f.name === name);
      options = (field?.topValues ?? []).filter((v) => String(v.value).toLowerCase().includes(prefix)).slice(0, 12)
        .map((v) => ({ label: String(v.value), hint: fmtNumber(v.count), insert: `${term(name, v.value)} ` }));
    }
    if (!options.length) return closeSuggest();
    active = -1;
    suggestList.replaceChildren(...options.map((o, i) => h('li', {
      id: `logs-suggest-${i}`, role: 'option', 'aria-selected': 'false',
      onmousedown: (e) => { e.preventDefault(); accept(i); },
    }, h('span', { class: 'mono' }, o.label), h('span', { class: 'muted' }, o.hint))));
    suggestList.hidden = false;
    input.setAttribute('aria-expanded', 'true');
  }

  function closeSuggest() {
    suggestList.hidden = true;
    input.setAttribute('aria-expanded', 'false');
    input.removeAttribute('aria-activedescendant');
    options = [];
    active = -1;
  }

  function accept(i) {
    const { start } = currentToken();
    const caret = input.selectionStart ?? input.value.length;
    const insert = options[i].insert;
    input.value = input.value.slice(0, start) + insert + input.value.slice(caret);
    input.setSelectionRange(start + insert.length, start + insert.length);
    closeSuggest();
    if (insert.endsWith(':')) suggest(); // a field name: go on with its values
  }

  function highlight(i) {
    active = (i + options.length) % options.length;
    [...suggestList.children].forEach((li, j) => li.setAttribute('aria-selected', String(j === active)));
    input.setAttribute('aria-activedescendant', `logs-suggest-${active}`);
  }

  const suggestSoon = debounce(suggest, 80);
  input.addEventListener('focus', () => loadFields());
  input.addEventListener('input', async () => { await loadFields(); suggestSoon(); });
  input.addEventListener('blur', () => closeSuggest());
  input.addEventListener('keydown', (e) => {
    if (suggestList.hidden) return;
    if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      e.preventDefault();
      highlight(active + (e.key === 'ArrowDown' ? 1 : -1));
    } else if ((e.key === 'Enter' && active >= 0) || (e.key === 'Tab' && !e.shiftKey)) {
      e.preventDefault();
      accept(Math.max(active, 0));
    } else if (e.key === 'Escape') {
      e.preventDefault();
      closeSuggest();
    }
  });

  await run();
  return () => {
    tail?.source.close();
    histogramCleanup?.();
  };
}

// ---- the volume histogram -----------------------------------------------------------------

/**
 * Draws the histogram answer as stacked bars by severity, sized to `el`'s width. Dragging
 * across buckets (or clicking one) calls `zoom(startMs, endMs)`. Returns a cleanup function.
 */
function drawHistogram(el, hist, range, zoom) {
  const buckets = hist.buckets.map((b) => ({ ...b, t: nsToMs(b.startUnixNano) }));
  const intervalMs = nsToMs(hist.intervalNanos);
  const totals = Object.fromEntries(SEVERITIES.map((s) => [s, 0]));
  for (const b of buckets) for (const [s, n] of Object.entries(b.bySeverity)) totals[s] = (totals[s] ?? 0) + n;
  const legend = h('div', { class: 'histogram-legend' },
    h('span', { class: 'muted' }, `${fmtNumber(buckets.reduce((s, b) => s + b.count, 0))} logs, ${fmtNumber(intervalMs / 1000)}s per bar`),
    SEVERITIES.filter((s) => totals[s] > 0).map((s) => h('span', { class: 'legend-item' },
      h('span', { class: `swatch sev-fill-${s}` }), `${s.toLowerCase()} ${fmtNumber(totals[s])}`)),
    h('span', { class: 'muted' }, ' · drag across the bars to zoom'));

  const draw = () => {
    const width = Math.max(el.clientWidth, 300);
    const height = 96;
    const [left, top, bottom] = [44, 6, 18];
    const plotW = width - left - 6;
    const plotH = height - top - bottom;
    const max = Math.max(1, ...buckets.map((b) => b.count));
    const barW = plotW / Math.max(buckets.length, 1);
    const y = (n) => top + plotH - (n / max) * plotH;
    const shortTime = range[1] - range[0] > 86400e3
      ? (t) => new Date(t).toLocaleString([], { month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit' })
      : (t) => new Date(t).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: range[1] - range[0] < 600e3 ? '2-digit' : undefined });
    const labelEvery = Math.max(1, Math.ceil(buckets.length / Math.floor(plotW / 90)));
    const selection = svg('rect', { class: 'hist-selection', y: top, height: plotH, width: 0, visibility: 'hidden' });

    const bars = buckets.map((b, i) => {
      let acc = 0;
      const x = left + i * barW;
      const rects = SEVERITIES.filter((s) => b.bySeverity[s]).map((s) => {
        const y0 = y(acc);
        acc += b.bySeverity[s];
        return svg('rect', { class: `sev-fill-${s}`, x: x + 0.5, width: Math.max(barW - 1, 1), y: y(acc), height: Math.max(y0 - y(acc), 0.5) });
      });
      const detail = SEVERITIES.filter((s) => b.bySeverity[s]).map((s) => `${s.toLowerCase()} ${b.bySeverity[s]}`).join(', ');
      return svg('g', { class: 'hist-bar' },
        svg('title', {}, `${fmtTime(b.t)}: ${b.count} logs${detail ? ` (${detail})` : ''}`),
        svg('rect', { class: 'hist-hit', x, y: top, width: barW, height: plotH }),
        ...rects);
    });
    const labels = buckets.map((b, i) => (i % labelEvery === 0
      ? svg('text', { class: 'hist-label', x: left + i * barW, y: height - 4 }, shortTime(b.t)) : null));
    const chart = svg('svg', { width, height, class: 'histogram', role: 'img', 'aria-label': `Log volume over time, at most ${max} per bar` },
      svg('line', { class: 'hist-axis', x1: left, x2: width - 6, y1: top + plotH + 0.5, y2: top + plotH + 0.5 }),
      svg('text', { class: 'hist-label', x: left - 6, y: top + 9, 'text-anchor': 'end' }, fmtNumber(max)),
      svg('text', { class: 'hist-label', x: left - 6, y: top + plotH, 'text-anchor': 'end' }, '0'),
      bars, labels, selection);

    // Drag across buckets to zoom to them; a click zooms to one bucket.
    const index = (e) => {
      const box = chart.getBoundingClientRect();
      return Math.min(buckets.length - 1, Math.max(0, Math.floor((e.clientX - box.left - left) / barW)));
    };
    let from = null;
    const mark = (a, b) => {
      const [i, j] = [Math.min(a, b), Math.max(a, b)];
      selection.setAttribute('x', left + i * barW);
      selection.setAttribute('width', (j - i + 1) * barW);
      selection.setAttribute('visibility', 'visible');
    };
    chart.addEventListener('pointerdown', (e) => {
      if (e.button !== 0 || !buckets.length) return;
      from = index(e);
      chart.setPointerCapture(e.pointerId);
      mark(from, from);
    });
    chart.addEventListener('pointermove', (e) => { if (from !== null) mark(from, index(e)); });
    chart.addEventListener('pointerup', (e) => {
      if (from === null) return;
      const to = index(e);
      const [i, j] = [Math.min(from, to), Math.max(from, to)];
      from = null;
      zoom(buckets[i].t, buckets[j].t + intervalMs);
    });
    el.replaceChildren(chart, legend);
  };

  draw();
  let lastWidth = el.clientWidth;
  const resize = new ResizeObserver(() => {
    if (el.clientWidth !== lastWidth) { lastWidth = el.clientWidth; draw(); }
  });
  resize.observe(el);
  return () => resize.disconnect();
}

// Trace search: a form whose state is the URL (Jaeger UI's parameters, so shared links keep
// working), a scatter plot of duration over time, and a list of trace summaries with paging.
//
// Submitting navigates to the new URL, so every search is a history entry and can be shared;
// the view then renders from the URL alone.

import { navigate } from '../app.js';
import {
  h, svg, getJSON, showLoading, showError, showEmpty, noDataYet, fmtDuration, fmtTime, fmtAgo,
  nsToMs, rangeFromParams, parseInstant, rfc3339, toLocalInput, LOOKBACKS, serviceColor,
  serviceChip,
} from '../util.js';

const DEFAULT_LIMIT = 20;
const SORTS = [
  ['newest', 'Most recent', (a, b) => b.startMs - a.startMs],
  ['oldest', 'Oldest', (a, b) => a.startMs - b.startMs],
  ['longest', 'Longest first', (a, b) => b.durationNanos - a.durationNanos],
  ['shortest', 'Shortest first', (a, b) => a.durationNanos - b.durationNanos],
  ['spans', 'Most spans', (a, b) => b.spanCount - a.spanCount],
  ['errors', 'Most errors', (a, b) => b.errorSpanCount - a.errorSpanCount],
];
// Offered by the attribute autocomplete besides the keys of traces opened before.
const COMMON_KEYS = [
  'http.request.method', 'http.response.status_code', 'http.method', 'http.status_code',
  'http.route', 'http.url', 'url.path', 'server.address', 'peer.service', 'db.system',
  'db.statement', 'db.operation', 'rpc.system', 'rpc.method', 'messaging.system',
  'messaging.destination.name', 'exception.type', 'error',
];

export async function render(root, { params, signal }) {
  const form = searchForm(params, signal);
  const results = h('section', { class: 'search-results', 'aria-label': 'Results' });
  root.append(h('div', { class: 'search-view' }, form, results));
  return runSearch(results, params, signal, form.servicesLoaded);
}

// ---- the query: URL parameters <-> API parameters -----------------------------------------

/** `k=v k2="v 2"` as [[k, v], ...], or null when the text is not logfmt (then it is a query). */
function parseLogfmt(text) {
  const pairs = [];
  const re = /\s*([^\s=:"]+)=(?:"((?:[^"\\]|\\.)*)"|([^\s"]*))\s*/y;
  let m;
  while (re.lastIndex < text.length && (m = re.exec(text))) {
    pairs.push([m[1], m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : m[3]]);
  }
  return re.lastIndex === text.length || text.trim() === '' ? pairs : null;
}

/** The attribute text box from the URL: `tags` (logfmt, or Jaeger UI's JSON object) or `query`. */
function attributesFromParams(params) {
  const tags = params.get('tags') || '';
  if (tags.trim().startsWith('{')) {
    try {
      return Object.entries(JSON.parse(tags))
        .map(([k, v]) => `${k}=${/^[^\s"]+$/.test(String(v)) ? v : JSON.stringify(String(v))}`).join(' ');
    } catch { /* not JSON after all: shown as typed */ }
  }
  return [tags, params.get('query') || ''].filter(Boolean).join(' ');
}

/** GET /api/v1/traces parameters of the URL's search. */
function apiParams(params) {
  const [start, end] = rangeFromParams(params);
  const text = attributesFromParams(params);
  const pairs = parseLogfmt(text);
  const api = {
    service: params.get('service'),
    operation: params.get('operation'),
    minDuration: params.get('minDuration'),
    maxDuration: params.get('maxDuration'),
    minTraceDuration: params.get('minTraceDuration'),
    maxTraceDuration: params.get('maxTraceDuration'),
    parentService: params.get('parentService'),
    start: rfc3339(start),
    end: rfc3339(end),
    limit: params.get('limit') || DEFAULT_LIMIT,
    tag: [],
  };
  if (params.get('errors') === 'true') api.error = 'true';
  if (pairs) {
    for (const [k, v] of pairs) {
      // Jaeger's `error=true` tag means the span's status, not an attribute named error.
      if (k === 'error' && v === 'true') api.error = 'true';
      else api.tag.push(`${k}=${v}`);
    }
  } else {
    api.query = text;
  }
  return api;
}

// ---- the form ---------------------------------------------------------------------------

function searchForm(params, signal) {
  const serviceSelect = h('select', { name: 'service', 'data-testid': 'search-service' },
    h('option', { value: '' }, 'All services'),
    params.get('service') ? h('option', { value: params.get('service'), selected: true }, params.get('service')) : null);
  const operationSelect = h('select', { name: 'operation' }, h('option', { value: '' }, 'All operations'),
    params.get('operation') ? h('option', { value: params.get('operation'), selected: true }, params.get('operation')) : null);
  const attributes = h('input', {
    name: 'attributes', value: attributesFromParams(params), autocomplete: 'off', spellcheck: 'false',
    'data-primary-input': true, 'aria-describedby': 'attr-help',
    placeholder: 'http.status_code=500 error=true',
  });
  const lookback = h('select', { name: 'lookback' },
    LOOKBACKS.map(([value, label]) => h('option', { value }, label)));
  const [start, end] = rangeFromParams(params);
  lookback.value = params.get('lookback') || (params.get('start') ? 'custom' : '1h');
  const startInput = h('input', { type: 'datetime-local', name: 'start', value: toLocalInput(start) });
  const endInput = h('input', { type: 'datetime-local', name: 'end', value: toLocalInput(end) });
  const custom = h('div', { class: 'row search-custom', hidden: lookback.value !== 'custom' },
    h('label', {}, 'Start', startInput), h('label', {}, 'End', endInput));
  lookback.addEventListener('change', () => { custom.hidden = lookback.value !== 'custom'; });
  const text = (name, label, placeholder) => h('label', {}, label,
    h('input', { name, value: params.get(name) || '', placeholder, size: 7 }));

  const form = h('form', {
    class: 'search-form panel', 'data-testid': 'search-form', role: 'search',
    onsubmit: (event) => {
      event.preventDefault();
      navigate(`/search?${formToParams(form, startInput, endInput)}`);
    },
  },
  h('label', {}, 'Service', serviceSelect),
  h('label', {}, 'Operation', operationSelect),
  h('label', { class: 'search-attrs' }, 'Attributes', attributes,
    h('small', { id: 'attr-help', class: 'muted' },
      'key=value pairs (logfmt), or a query: ', h('code', {}, 'http.status_code:[500 TO 599] AND NOT db.system:redis'))),
  h('div', { class: 'row' },
    text('minDuration', 'Span min', '100ms'), text('maxDuration', 'Span max', '2s')),
  h('div', { class: 'row' },
    text('minTraceDuration', 'Trace min', '1s'), text('maxTraceDuration', 'Trace max', '')),
  calledBy(params.get('parentService')),
  h('label', { class: 'inline' },
    h('input', { type: 'checkbox', name: 'errors', checked: params.get('errors') === 'true' }), 'Errors only'),
  h('div', { class: 'row' },
    h('label', {}, 'Lookback', lookback),
    h('label', {}, 'Limit', h('input', { name: 'limit', type: 'number', min: 1, max: 1000, value: params.get('limit') || DEFAULT_LIMIT, size: 4 }))),
  custom,
  h('button', { type: 'submit', class: 'primary', 'data-testid': 'search-submit' }, 'Find traces'));

  const loadAttributes = attachAutocomplete(attributes, signal);

  const loadOperations = async () => {
    const service = serviceSelect.value;
    const keep = operationSelect.value;
    operationSelect.replaceChildren(h('option', { value: '' }, 'All operations'));
    if (!service) return;
    try {
      const answer = await getJSON('/api/operations', { service }, { signal });
      const names = [...new Set((answer.data ?? []).map((op) => op.name))].sort();
      operationSelect.append(...names.map((name) => h('option', { value: name }, name)));
      operationSelect.value = names.includes(keep) ? keep : '';
    } catch (err) {
      if (err.name !== 'AbortError') operationSelect.append(h('option', { disabled: true }, `(${err.message})`));
    }
  };
  serviceSelect.addEventListener('change', loadOperations);
  serviceSelect.addEventListener('change', () => loadAttributes(serviceSelect.value));
  loadAttributes(serviceSelect.value);

  // The form is usable at once; the service list fills in when it arrives.
  form.servicesLoaded = getJSON('/api/services', {}, { signal }).then((answer) => {
    const services = [...(answer.data ?? [])].sort();
    const chosen = serviceSelect.value;
    serviceSelect.replaceChildren(h('option', { value: '' }, 'All services'),
      ...services.map((name) => h('option', { value: name }, name)));
    if (chosen && !services.includes(chosen)) serviceSelect.append(h('option', { value: chosen }, chosen));
    serviceSelect.value = chosen;
    loadOperations();
    return services;
  }, (err) => {
    if (err.name !== 'AbortError') serviceSelect.title = `services unavailable: ${err.message}`;
    return null;
  });
  return form;
}

/**
 * The service map's edge condition (`parentService`): kept as a hidden field while searching
 * again, shown with a button that drops it.
 */
function calledBy(parent) {
  if (!parent) return null;
  const box = h('div', { class: 'inline', 'data-testid': 'search-called-by' },
    h('input', { type: 'hidden', name: 'parentService', value: parent }),
    'Called by ', serviceChip(parent), ' ',
    h('button', { type: 'button', title: 'Search without this condition', onclick: () => box.remove() }, '✕'));
  return box;
}

/** The URL query of the form, in Jaeger UI's parameters; start/end in microseconds. */
function formToParams(form, startInput, endInput) {
  const data = new FormData(form);
  const out = new URLSearchParams();
  const put = (key, value) => { if (value) out.set(key, value); };
  put('service', data.get('service'));
  put('operation', data.get('operation'));
  put('parentService', data.get('parentService'));
  const attributes = String(data.get('attributes') || '').trim();
  if (parseLogfmt(attributes)) put('tags', attributes);
  else put('query', attributes);
  for (const key of ['minDuration', 'maxDuration', 'minTraceDuration', 'maxTraceDuration']) {
    put(key, String(data.get(key) || '').trim());
  }
  if (data.get('errors')) out.set('errors', 'true');
  const lookback = data.get('lookback');
  out.set('lookback', lookback);
  if (lookback === 'custom') {
    put('start', String(Math.round(parseInstant(startInput.value) * 1000)));
    put('end', String(Math.round((parseInstant(endInput.value) ?? Date.now()) * 1000)));
  }
  if (Number(data.get('limit')) !== DEFAULT_LIMIT) put('limit', data.get('limit'));
  return out;
}

/**
 * Suggests attribute keys for the word under the cursor: keys of traces opened before (the
 * trace view remembers them) and common semantic-convention keys. Arrows move, Tab accepts.
 */
/**
 * Autocomplete of the attributes box: names from `/api/v1/traces/attributes` (the spans of the
 * chosen service, last 24 hours), keys of traces opened before and common OpenTelemetry keys;
 * after `key=`, that key's most frequent values. Returns `load(service)`, which refreshes the
 * names for another service.
 */
function attachAutocomplete(input, signal) {
  const remembered = JSON.parse(localStorage.getItem('sightline.attrKeys') || '[]');
  let catalog = new Map(); // name → top values, from the server
  let known = [];
  const rebuild = () => {
    known = [...new Set([...catalog.keys(), ...remembered, ...COMMON_KEYS])];
  };
  rebuild();
  const load = async (service) => {
    try {
      const body = await getJSON('/api/v1/traces/attributes', { service, values: 20 }, { signal });
      catalog = new Map(body.data.map((f) => [f.name, f.topValues.map((v) => String(v.value))]));
      rebuild();
    } catch (err) {
      // Suggestions are a convenience: without them the box still works.
      if (err.name !== 'AbortError') console.warn('attribute suggestions unavailable:', err.message);
    }
  };
  const list = h('ul', { class: 'search-suggest', role: 'listbox', id: 'attr-suggest', hidden: true });
  input.setAttribute('role', 'combobox');
  input.setAttribute('aria-controls', 'attr-suggest');
  input.setAttribute('aria-expanded', 'false');
  input.after(list);
  let items = [];
  let active = -1;
  // The token under the caret: a key being typed, or `key=value` / `key:value` with its value.
  const token = () => {
    const before = input.value.slice(0, input.selectionStart);
    const m = /([^\s()"]*)$/.exec(before);
    const text = m[1];
    const from = before.length - text.length;
    const sep = text.search(/[=:]/);
    return sep < 0
      ? { key: text, from }
      : { key: text.slice(0, sep), value: text.slice(sep + 1), from: from + sep + 1 };
  };
  const close = () => { list.hidden = true; items = []; input.setAttribute('aria-expanded', 'false'); };
  const accept = (item) => {
    const { value, from } = token();
    const rest = input.value.slice(input.selectionStart).replace(/^[^\s]*/, '');
    const text = value === undefined ? `${item}=` : (/[\s"]/.test(item) ? JSON.stringify(item) : item);
    input.value = `${input.value.slice(0, from)}${text}${rest}`;
    const caret = from + text.length;
    input.setSelectionRange(caret, caret);
    close();
    if (value === undefined) show(); // on to the values of the key just chosen
  };
  const show = () => {
    const { key, value } = token();
    items = value === undefined
      ? (key.length < 1 ? [] : known.filter((k) => k.includes(key) && k !== key)
        .sort((a, b) => (b.startsWith(key) - a.startsWith(key)) || a.localeCompare(b)).slice(0, 10))
      : (catalog.get(key) ?? []).filter((v) => v.startsWith(value) && v !== value).slice(0, 10);
    active = -1;
    if (!items.length) return close();
    list.replaceChildren(...items.map((item, n) => h('li', {
      role: 'option', id: `attr-suggest-${n}`,
      onmousedown: (e) => { e.preventDefault(); accept(item); },
    }, item)));
    list.hidden = false;
    input.setAttribute('aria-expanded', 'true');
    return undefined;
  };
  const move = (step) => {
    active = (active + step + items.length) % items.length;
    [...list.children].forEach((li, n) => li.setAttribute('aria-selected', String(n === active)));
    input.setAttribute('aria-activedescendant', `attr-suggest-${active}`);
  };
  input.addEventListener('input', show);
  input.addEventListener('blur', close);
  input.addEventListener('keydown', (e) => {
    if (list.hidden) return;
    if (e.key === 'ArrowDown') { e.preventDefault(); move(1); }
    else if (e.key === 'ArrowUp') { e.preventDefault(); move(-1); }
    else if (e.key === 'Tab' || (e.key === 'Enter' && active >= 0)) { e.preventDefault(); accept(items[Math.max(active, 0)]); }
    else if (e.key === 'Escape') { e.preventDefault(); close(); }
  });
  return load;
}

// ---- results ----------------------------------------------------------------------------

async function runSearch(results, params, signal, servicesLoaded) {
  showLoading(results, 'Searching traces…');
  const query = apiParams(params);
  let page;
  try {
    page = await getJSON('/api/v1/traces', query, { signal });
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    showError(results, err);
    return undefined;
  }
  const traces = page.traces.map(withTimes);
  if (!traces.length) {
    const services = await servicesLoaded;
    if (services?.length === 0) {
      showEmpty(results, 'Nothing to search yet.', ...noDataYet('traces'));
      return undefined;
    }
    const range = params.get('lookback') && params.get('lookback') !== 'custom'
      ? `the last ${LOOKBACKS.find(([v]) => v === params.get('lookback'))?.[1] ?? params.get('lookback')}`
      : params.get('start') ? 'the chosen range' : 'the last hour';
    showEmpty(results, 'No traces match.',
      `Nothing was found in ${range}. Try a longer lookback, or fewer conditions.`,
      ...warningsOf(page));
    return undefined;
  }
  const state = { traces, cursor: page.nextCursor, sort: 'newest', selected: new Set() };
  const scatter = h('div', { class: 'search-scatter panel' });
  const list = h('ol', { class: 'search-list' });
  const count = h('span', { class: 'search-count' });
  const more = h('button', { type: 'button', 'data-testid': 'next-page' }, 'Load more');
  const compare = h('a', { class: 'button-link', hidden: true }, 'Compare selected');
  const sort = h('select', { 'aria-label': 'Sort results' }, SORTS.map(([value, label]) => h('option', { value }, label)));
  const warnings = h('div', {}, warningsOf(page));

  const draw = () => {
    const order = SORTS.find(([v]) => v === state.sort)[2];
    const sorted = [...state.traces].sort(order);
    const longest = Math.max(...sorted.map((t) => t.durationNanos), 1);
    list.replaceChildren(...sorted.map((t) => resultItem(t, longest, state, updateCompare)));
    drawScatter(scatter, state.traces);
    count.textContent = `${state.traces.length} trace${state.traces.length === 1 ? '' : 's'}`;
    more.hidden = !state.cursor;
  };
  const updateCompare = () => {
    const ids = [...state.selected];
    compare.hidden = ids.length !== 2;
    if (ids.length === 2) compare.href = `/trace/${ids[0]}...${ids[1]}`;
  };
  sort.addEventListener('change', () => { state.sort = sort.value; draw(); });
  more.addEventListener('click', async () => {
    more.disabled = true;
    more.textContent = 'Loading…';
    try {
      const next = await getJSON('/api/v1/traces', { ...query, cursor: state.cursor }, { signal });
      state.traces.push(...next.traces.map(withTimes));
      state.cursor = next.nextCursor;
      warnings.replaceChildren(...warningsOf(next));
      draw();
    } catch (err) {
      if (err.name !== 'AbortError') warnings.replaceChildren(h('p', { class: 'error-text', role: 'alert' }, err.message));
    } finally {
      more.disabled = false;
      more.textContent = 'Load more';
    }
  });

  results.replaceChildren(scatter,
    h('div', { class: 'toolbar' }, count, h('span', { class: 'spacer' }),
      compare, h('label', { class: 'inline' }, 'Sort', sort)),
    warnings, list, h('div', { class: 'search-more' }, more));
  draw();
  // The plot's width follows the page.
  const resize = new ResizeObserver(() => drawScatter(scatter, state.traces));
  resize.observe(scatter);
  return () => resize.disconnect();
}

function withTimes(t) {
  return { ...t, startMs: nsToMs(t.minStartTimeUnixNano) };
}

function warningsOf(page) {
  return (page.warnings ?? []).map((w) => h('p', {}, h('span', { class: 'badge warn' }, 'warning'), ' ', w));
}

function resultItem(t, longest, state, onSelect) {
  const href = `/trace/${t.traceId}`;
  const box = h('input', {
    type: 'checkbox', 'aria-label': 'Select for comparison', checked: state.selected.has(t.traceId),
    onchange: () => {
      if (box.checked) state.selected.add(t.traceId); else state.selected.delete(t.traceId);
      onSelect();
    },
  });
  const services = [...(t.services ?? [])].sort((a, b) => b.spanCount - a.spanCount);
  return h('li', { class: `search-result${t.errorSpanCount ? ' has-error' : ''}`, 'data-testid': 'trace-result' },
    h('div', { class: 'search-result-head' },
      box,
      h('a', { href, class: 'search-result-title' },
        t.rootServiceName
          ? h('span', { style: { color: serviceColor(t.rootServiceName) } }, t.rootServiceName)
          : h('span', { class: 'muted' }, '(no root span)'),
        ': ', t.rootOperationName ?? '', ' ',
        h('code', { class: 'muted' }, t.traceId.slice(0, 8))),
      h('span', { class: 'spacer' }),
      h('span', { class: 'search-dur' }, fmtDuration(t.durationNanos))),
    h('div', { class: 'search-durbar', 'aria-hidden': 'true' },
      h('i', { style: { width: `${(t.durationNanos / longest) * 100}%` } })),
    h('div', { class: 'search-result-meta' },
      h('span', {}, `${t.spanCount} span${t.spanCount === 1 ? '' : 's'}`),
      t.errorSpanCount ? h('span', { class: 'badge error' }, `${t.errorSpanCount} error${t.errorSpanCount === 1 ? '' : 's'}`) : null,
      services.map((s) => serviceChip(s.name, s.errorSpanCount ? `${s.spanCount} · ${s.errorSpanCount} err` : String(s.spanCount))),
      h('span', { class: 'spacer' }),
      h('time', { class: 'muted', datetime: t.startTime, title: fmtTime(t.startMs) },
        `${fmtTime(t.startMs).slice(11, 19)} · ${fmtAgo(t.startMs)}`)));
}

// ---- scatter plot -----------------------------------------------------------------------

const PLOT = { height: 180, left: 56, right: 12, top: 10, bottom: 24 };

/** Duration over start time, one circle per trace; errors red; click opens the trace. */
function drawScatter(box, traces) {
  const width = Math.max(box.clientWidth - 24, 300);
  const { height, left, right, top, bottom } = PLOT;
  const t0 = Math.min(...traces.map((t) => t.startMs));
  const t1 = Math.max(...traces.map((t) => t.startMs), t0 + 1000);
  const dMax = Math.max(...traces.map((t) => t.durationNanos), 1) * 1.1;
  const sMax = Math.max(...traces.map((t) => t.spanCount), 1);
  const x = (ms) => left + ((ms - t0) / (t1 - t0)) * (width - left - right);
  const y = (ns) => top + (1 - ns / dMax) * (height - top - bottom);
  const tooltip = h('div', { class: 'search-tooltip', role: 'tooltip', hidden: true });

  const axes = [];
  for (let k = 0; k <= 3; k++) {
    const ns = (dMax * k) / 3;
    axes.push(svg('line', { class: 'grid', x1: left, x2: width - right, y1: y(ns), y2: y(ns) }),
      svg('text', { x: left - 6, y: y(ns) + 4, 'text-anchor': 'end' }, fmtDuration(ns)));
  }
  for (let k = 0; k <= 4; k++) {
    const ms = t0 + ((t1 - t0) * k) / 4;
    axes.push(svg('text', { x: x(ms), y: height - 6, 'text-anchor': k === 0 ? 'start' : k === 4 ? 'end' : 'middle' },
      // HH:MM:SS, with milliseconds when the whole axis spans less than 5 s.
      fmtTime(ms).slice(11, t1 - t0 < 5000 ? 23 : 19)));
  }
  const dots = traces.map((t) => {
    const errors = t.errorSpanCount ? `, ${t.errorSpanCount} errors` : '';
    const label = `${t.rootServiceName ?? '?'}: ${t.rootOperationName ?? ''}, ${fmtDuration(t.durationNanos)}, `
      + `${t.spanCount} spans${errors}, ${fmtTime(t.startMs)}`;
    const open = () => navigate(`/trace/${t.traceId}`);
    const showTip = () => {
      tooltip.textContent = label;
      tooltip.hidden = false;
      const px = (x(t.startMs) / width) * 100;
      Object.assign(tooltip.style, { left: `${Math.min(px, 75)}%`, top: `${y(t.durationNanos) + 14}px` });
    };
    return svg('circle', {
      cx: x(t.startMs), cy: y(t.durationNanos), r: 3 + 6 * Math.sqrt(t.spanCount / sMax),
      class: t.errorSpanCount ? 'error' : '', tabindex: '0', role: 'link', 'aria-label': label,
      'data-trace-id': t.traceId, style: t.errorSpanCount ? null : `--c:${serviceColor(t.rootServiceName ?? '')}`,
      onclick: open, onkeydown: (e) => { if (e.key === 'Enter') open(); },
      onmouseenter: showTip, onfocus: showTip,
      onmouseleave: () => { tooltip.hidden = true; }, onblur: () => { tooltip.hidden = true; },
    });
  });
  box.replaceChildren(
    svg('svg', {
      'data-testid': 'scatter', width, height, viewBox: `0 0 ${width} ${height}`,
      role: 'group', 'aria-label': 'Trace duration over time',
    },
      ...axes, ...dots),
    tooltip);
}

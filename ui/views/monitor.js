// Services: rate, errors and duration (RED) per service from the span-derived metrics
// (`traces_spanmetrics_calls_total` and the `traces_spanmetrics_latency` histogram, labels
// `service`, `span_name`, `span_kind`, `status_code`), an overview of every service, and the
// operations of one. The RED pieces are exported: the service map's side panel shows them too.

import { navigate } from '../app.js';
import {
  h, ApiError, getJSON, request, showLoading, showError, showEmpty, noDataYet, fmtDuration, rangeFromParams,
  LOOKBACKS, serviceChip,
} from '../util.js';
import { timeChart, matrixToData, chartPanel, fmtNumber, fmtRate } from '../chart.js';

const CALLS = 'traces_spanmetrics_calls_total';
const LATENCY = 'traces_spanmetrics_latency_bucket';
const ERROR = 'STATUS_CODE_ERROR';
// A service's requests are the spans it serves (server) or consumes from a broker (consumer):
// its client and internal spans are work it does for those, not more requests.
const ENTRY_KINDS = 'span_kind=~"SPAN_KIND_SERVER|SPAN_KIND_CONSUMER"';

/** A label value as PromQL text. */
export const promString = (text) => JSON.stringify(String(text));

/**
 * GETs `/prometheus/api/v1/{path}` and resolves to Prometheus' whole envelope
 * (`{status, data, warnings}`). A failure throws an ApiError whose message is Prometheus' own
 * `errorType: error`, shown as it is.
 */
export async function promEnvelope(path, params, signal) {
  const { url, response } = await request(`/prometheus/api/v1/${path}`, params, signal);
  const body = await response.json().catch(() => null);
  if (response.ok && body?.status === 'success') return body;
  const message = body?.errorType ? `${body.errorType}: ${body.error}` : response.statusText;
  throw new ApiError(response.status, message, url);
}

/** The `data` of a Prometheus API answer (see promEnvelope). */
export const promGet = (path, params, signal) => promEnvelope(path, params, signal).then((b) => b.data);

/** The query_range step for a range: about 120 points, at least 15 s. */
export function autoStepSeconds([start, end]) {
  return Math.max(15, Math.ceil((end - start) / 1000 / 120));
}

/** The rate() window for a step: two steps, and at least 30 s (metrics flush every 5 s). */
const rateWindow = (step) => `${Math.max(2 * step, 30)}s`;

/**
 * Draws a service's request rate, error percentage and p50/p95/p99 latency over `range` into
 * `el`. Returns a cleanup function.
 */
export async function redCharts(el, service, range, signal) {
  const step = autoStepSeconds(range);
  const w = rateWindow(step);
  const sel = `service=${promString(service)}`;
  const [start, end] = range.map((ms) => ms / 1000);
  const ask = (query) => promGet('query_range', { query, start, end, step }, signal);
  showLoading(el, `Loading the metrics of ${service}…`);
  const quantile = (q) => ask(`histogram_quantile(${q}, sum by (le) (rate(${LATENCY}{${sel}, ${ENTRY_KINDS}}[${w}])))`);
  const [byStatus, p50, p95, p99] = await Promise.all([
    ask(`sum by (status_code) (rate(${CALLS}{${sel}, ${ENTRY_KINDS}}[${w}]))`),
    quantile(0.5), quantile(0.95), quantile(0.99),
  ]);
  if (!byStatus.result.length) {
    showEmpty(el, `No requests served by ${service} in this range.`,
      'Its spans may all be client or internal spans; widen the time range, or look at its traces in ',
      h('a', { href: `/search?service=${encodeURIComponent(service)}` }, 'Search'), '.');
    return () => {};
  }
  // Requests and errors per step, from the one query by status code.
  const [times, ...columns] = matrixToData(byStatus.result);
  const errorIndex = byStatus.result.findIndex((s) => s.metric.status_code === ERROR);
  const total = times.map((_, i) => columns.reduce((sum, c) => sum + (c[i] ?? 0), 0));
  const errors = times.map((_, i) => (errorIndex < 0 ? 0 : columns[errorIndex][i] ?? 0));
  const errorPct = total.map((t, i) => (t > 0 ? (100 * errors[i]) / t : null));
  const toNanos = (result) => result.map((s) => ({ ...s, values: s.values.map(([t, v]) => [t, Number(v) * 1e9]) }));
  const latency = matrixToData([p50, p95, p99].map((r) => toNanos(r.result)[0] ?? { values: [] }));

  const rate = chartPanel('Request rate');
  const errs = chartPanel('Error rate');
  const lat = chartPanel('Latency');
  el.replaceChildren(h('div', { class: 'red-charts' }, rate.el, errs.el, lat.el));
  const xRange = [start, end];
  const charts = [
    timeChart(rate.body, { series: [{ label: 'requests/s' }], data: [times, total], format: fmtNumber, height: 180, xRange }),
    timeChart(errs.body, {
      series: [{ label: 'errors %', color: 'var(--error)' }],
      data: [times, errorPct],
      format: (v) => (v === null || !Number.isFinite(v) ? '–' : `${fmtNumber(v)}%`),
      height: 180,
      xRange,
    }),
    timeChart(lat.body, {
      series: [{ label: 'p50' }, { label: 'p95' }, { label: 'p99' }],
      data: latency,
      format: (v) => (v === null ? '–' : fmtDuration(v)),
      height: 180,
      xRange,
    }),
  ];
  return () => charts.forEach((c) => c.destroy());
}

/**
 * Rate, error % and p95 over the whole range, grouped by `labels` (e.g. ['service'] or
 * ['span_name', 'span_kind']), from instant queries at the range's end.
 * Resolves to [{labels: {...}, rate, errorPct, p95Nanos}], busiest first.
 */
export async function redTable(selector, labels, range, signal) {
  const seconds = Math.max(1, Math.round((range[1] - range[0]) / 1000));
  const by = labels.join(', ');
  const ask = (query) => promGet('query', { query, time: range[1] / 1000 }, signal);
  const [calls, p95] = await Promise.all([
    ask(`sum by (${by}, status_code) (increase(${CALLS}{${selector}}[${seconds}s]))`),
    ask(`histogram_quantile(0.95, sum by (${by}, le) (increase(${LATENCY}{${selector}}[${seconds}s])))`),
  ]);
  const keyOf = (metric) => labels.map((l) => metric[l] ?? '').join('\u0000');
  const rows = new Map();
  for (const { metric, value } of calls.result) {
    const key = keyOf(metric);
    const row = rows.get(key) ?? { labels: Object.fromEntries(labels.map((l) => [l, metric[l] ?? ''])), calls: 0, errors: 0, p95Nanos: null };
    const n = Number(value[1]) || 0;
    row.calls += n;
    if (metric.status_code === ERROR) row.errors += n;
    rows.set(key, row);
  }
  for (const { metric, value } of p95.result) {
    const row = rows.get(keyOf(metric));
    const v = Number(value[1]);
    if (row && Number.isFinite(v)) row.p95Nanos = v * 1e9;
  }
  return [...rows.values()]
    .map((r) => ({ ...r, rate: r.calls / seconds, errorPct: r.calls > 0 ? (100 * r.errors) / r.calls : 0 }))
    .sort((a, b) => b.rate - a.rate);
}

const pct = (v) => `${v < 0.1 && v > 0 ? v.toFixed(2) : fmtNumber(v)}%`;

/** The operations table of a service: kind, rate, error %, p95, each linking to its traces. */
export async function operationsTable(service, range, signal) {
  const rows = await redTable(`service=${promString(service)}`, ['span_name', 'span_kind'], range, signal);
  if (!rows.length) return h('p', { class: 'muted' }, 'No operations of this service in this range.');
  const kind = (k) => k.replace('SPAN_KIND_', '').toLowerCase();
  return h('table', { class: 'red-table' },
    h('thead', {}, h('tr', {}, h('th', {}, 'Operation'), h('th', {}, 'Kind'),
      h('th', { class: 'num' }, 'Rate'), h('th', { class: 'num' }, 'Errors'), h('th', { class: 'num' }, 'p95'))),
    h('tbody', {}, rows.map((r) => h('tr', {},
      h('td', {}, h('a', {
        href: `/search?${new URLSearchParams({ service, operation: r.labels.span_name })}`,
        title: 'Traces of this operation',
      }, r.labels.span_name)),
      h('td', { class: 'muted' }, kind(r.labels.span_kind)),
      h('td', { class: 'num' }, fmtRate(r.rate)),
      h('td', { class: `num${r.errors > 0 ? ' error-text' : ''}` }, pct(r.errorPct)),
      h('td', { class: 'num' }, r.p95Nanos === null ? '–' : fmtDuration(r.p95Nanos))))));
}

/** A lookback select (no custom range: these views always end now). */
export function lookbackSelect(value, onchange) {
  return h('label', {}, 'Time range',
    h('select', { onchange: (e) => onchange(e.target.value) },
      LOOKBACKS.filter(([v]) => v !== 'custom').map(([v, text]) =>
        h('option', { value: v, selected: v === value }, `Last ${text}`))));
}

export async function render(root, { params, signal }) {
  const service = params.get('service') || '';
  const lookback = params.get('lookback') || '1h';
  const range = rangeFromParams(params, '1h');
  const go = (next) => navigate(`/monitor?${new URLSearchParams(
    Object.entries({ service, lookback, ...next }).filter(([, v]) => v))}`);

  const select = h('select', { 'data-testid': 'monitor-service', 'data-primary-input': true, onchange: (e) => go({ service: e.target.value }) },
    h('option', { value: '' }, 'All services'));
  const body = h('div', { class: 'monitor-body' });
  root.append(h('div', { class: 'view-explore' },
    h('div', { class: 'toolbar' },
      h('label', {}, 'Service', select),
      lookbackSelect(lookback, (v) => go({ lookback: v })),
      service ? h('a', { class: 'toolbar-link', href: `/search?service=${encodeURIComponent(service)}&lookback=${lookback}` }, 'Traces of this service') : null,
      service ? h('a', { class: 'toolbar-link', href: `/dependencies?service=${encodeURIComponent(service)}&lookback=${lookback}` }, 'On the service map') : null),
    body));

  showLoading(body);
  const services = (await getJSON('/api/services', {}, { signal })).data ?? [];
  for (const name of [...services].sort()) select.append(h('option', { value: name, selected: name === service }, name));
  if (service && !services.includes(service)) select.append(h('option', { value: service, selected: true }, service));
  if (!services.length && !service) {
    showEmpty(body, 'No services yet.', ...noDataYet('traces'));
    return undefined;
  }
  return service ? renderService(body, service, range, signal) : renderOverview(body, services, range, lookback, signal);
}

async function renderOverview(body, services, range, lookback, signal) {
  showLoading(body, 'Loading the services…');
  const rows = await redTable(ENTRY_KINDS, ['service'], range, signal);
  const seen = new Set(rows.map((r) => r.labels.service));
  // Services that sent spans but served no requests in the range still get a row.
  const all = [...rows, ...services.filter((s) => !seen.has(s)).sort().map((s) => ({ labels: { service: s }, rate: null }))];
  body.replaceChildren(h('section', { class: 'panel' },
    h('h3', {}, 'Services'),
    h('p', { class: 'muted' }, 'Requests served (server and consumer spans) over the time range. Pick a service for its charts and operations.'),
    h('table', { class: 'red-table' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Service'), h('th', { class: 'num' }, 'Rate'),
        h('th', { class: 'num' }, 'Errors'), h('th', { class: 'num' }, 'p95'), h('th', {}, ''))),
      h('tbody', {}, all.map((r) => {
        const name = r.labels.service;
        return h('tr', {},
          h('td', {}, h('a', { href: `/monitor?service=${encodeURIComponent(name)}&lookback=${lookback}` }, serviceChip(name))),
          h('td', { class: 'num' }, r.rate === null ? '–' : fmtRate(r.rate)),
          h('td', { class: `num${r.errors > 0 ? ' error-text' : ''}` }, r.rate === null ? '–' : pct(r.errorPct)),
          h('td', { class: 'num' }, r.p95Nanos == null ? '–' : fmtDuration(r.p95Nanos)),
          h('td', {}, h('a', { href: `/search?service=${encodeURIComponent(name)}&lookback=${lookback}` }, 'traces')));
      })))));
  return undefined;
}

async function renderService(body, service, range, signal) {
  const charts = h('div');
  const ops = h('section', { class: 'panel' }, h('h3', {}, 'Operations'));
  const opsBody = h('div');
  ops.append(opsBody);
  body.replaceChildren(charts, ops);
  showLoading(opsBody, 'Loading the operations…');
  const [cleanup] = await Promise.all([
    redCharts(charts, service, range, signal),
    operationsTable(service, range, signal).then((table) => opsBody.replaceChildren(table),
      (err) => { if (err.name !== 'AbortError') showError(opsBody, err); }),
  ]);
  return cleanup;
}

// Metrics: a PromQL box over the Prometheus API, drawn as a chart (range query) or a table
// (instant query). Takes Prometheus' own URL parameters too (`g0.expr`, `g0.range_input`,
// `g0.step_input`, `g0.tab`), so links from Prometheus and Grafana land here.

import { setParams } from '../app.js';
import { h, showLoading, showError, showEmpty, lookbackMs } from '../util.js';
import { timeChart, matrixToData } from '../chart.js';
import { promEnvelope, promGet } from './monitor.js';

const RANGES = ['5m', '15m', '30m', '1h', '3h', '6h', '12h', '1d', '2d', '7d'];
const EXAMPLES = [
  'sum by (service) (rate(traces_spanmetrics_calls_total[5m]))',
  'histogram_quantile(0.95, sum by (service, le) (rate(traces_spanmetrics_latency_bucket[5m])))',
  'sum by (client, server) (rate(traces_service_graph_request_total[5m]))',
];
/** Series drawn at most: past a few hundred lines a chart says nothing and the page stalls. */
const MAX_SERIES = 200;

/** `name{a="1", b="2"}`: a series as Prometheus writes it. */
function seriesName(metric) {
  const { __name__: name = '', ...labels } = metric;
  const pairs = Object.entries(labels).map(([k, v]) => `${k}=${JSON.stringify(v)}`);
  return pairs.length ? `${name}{${pairs.join(', ')}}` : name || '{}';
}

export async function render(root, { params, signal }) {
  const state = {
    expr: params.get('expr') ?? params.get('g0.expr') ?? '',
    range: params.get('range') ?? params.get('g0.range_input') ?? '1h',
    step: params.get('step') ?? params.get('g0.step_input') ?? '',
    tab: ['table', '1'].includes(params.get('tab') ?? params.get('g0.tab')) ? 'table' : 'graph',
  };
  if (!lookbackMs(state.range)) state.range = '1h';
  let chart = null;

  const input = h('input', {
    type: 'text', class: 'promql-input mono', 'data-testid': 'promql-input', 'data-primary-input': true,
    value: state.expr, list: 'metric-names', spellcheck: 'false', autocomplete: 'off',
    placeholder: 'PromQL expression, e.g. rate(traces_spanmetrics_calls_total[5m])',
    'aria-label': 'PromQL expression',
  });
  const names = h('datalist', { id: 'metric-names' });
  const rangeSelect = h('select', { 'aria-label': 'Range' },
    RANGES.map((r) => h('option', { value: r, selected: r === state.range }, r)));
  if (!RANGES.includes(state.range)) rangeSelect.append(h('option', { value: state.range, selected: true }, state.range));
  const stepInput = h('input', { type: 'text', value: state.step, placeholder: 'auto', size: 6, 'aria-label': 'Step' });
  const tabButtons = ['graph', 'table'].map((tab) => h('button', {
    type: 'button', 'aria-pressed': String(state.tab === tab),
    onclick: () => { state.tab = tab; tabButtons.forEach((b) => b.setAttribute('aria-pressed', String(b.value === tab))); run(); },
    value: tab,
  }, tab === 'graph' ? 'Graph' : 'Table'));
  const out = h('div', { class: 'graph-out' });

  const form = h('form', {
    class: 'promql-form',
    onsubmit: (e) => { e.preventDefault(); run(); },
  },
  h('div', { class: 'promql-line' }, input, names,
    h('button', { type: 'submit', class: 'primary', 'data-testid': 'promql-submit' }, 'Execute')),
  h('div', { class: 'toolbar' },
    h('span', { class: 'segmented', role: 'group', 'aria-label': 'View' }, tabButtons),
    h('label', { class: 'inline' }, 'Range', rangeSelect),
    h('label', { class: 'inline' }, 'Step', stepInput)));
  root.append(h('div', { class: 'view-explore' }, form, out));
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') { e.preventDefault(); run(); }
  });
  rangeSelect.addEventListener('change', () => run());

  // Metric names for the datalist; the box works without them.
  promGet('label/__name__/values', {}, signal)
    .then((list) => names.replaceChildren(...list.map((n) => h('option', { value: n }))))
    .catch(() => {});

  async function run() {
    state.expr = input.value.trim();
    state.range = rangeSelect.value;
    state.step = stepInput.value.trim();
    setParams({ expr: state.expr, range: state.range, step: state.step, tab: state.tab === 'table' ? 'table' : '' });
    chart?.destroy();
    chart = null;
    if (!state.expr) {
      showEmpty(out, 'Enter a PromQL expression.', 'For example: ',
        EXAMPLES.map((ex) => h('button', { type: 'button', class: 'link mono', onclick: () => { input.value = ex; run(); } }, ex)));
      return;
    }
    showLoading(out, 'Querying…');
    try {
      if (state.tab === 'table') await drawTable();
      else await drawGraph();
    } catch (err) {
      if (err.name !== 'AbortError') showError(out, err);
    }
  }

  async function drawGraph() {
    const end = Date.now() / 1000;
    const seconds = lookbackMs(state.range) / 1000;
    // Prometheus' own auto step: a point per ~4 px of a 1000 px chart, at least 1 s.
    const step = state.step || Math.max(1, Math.round(seconds / 250));
    const body = await promEnvelope('query_range', { query: state.expr, start: end - seconds, end, step }, signal);
    const result = body.data.result ?? [];
    const warnings = warningsOf(body);
    if (!result.length) {
      showEmpty(out, 'The query returned no series.',
        'Check the metric name and labels (the box suggests metric names), or widen the range.');
      out.prepend(...warnings);
      return;
    }
    const drawn = result.slice(0, MAX_SERIES);
    const box = h('div', { class: 'metrics-chart' });
    out.replaceChildren(...warnings,
      h('p', { class: 'muted' }, `${result.length} series, step ${step}${typeof step === 'number' ? 's' : ''}`,
        result.length > drawn.length ? `; the first ${drawn.length} are drawn` : ''),
      box);
    chart = timeChart(box, {
      series: drawn.map((s) => ({ label: seriesName(s.metric) })),
      data: matrixToData(drawn),
      height: 320,
      xRange: [end - seconds, end],
    });
  }

  async function drawTable() {
    const body = await promEnvelope('query', { query: state.expr, time: Date.now() / 1000 }, signal);
    const { resultType, result } = body.data;
    let rows;
    if (resultType === 'scalar' || resultType === 'string') {
      rows = [[resultType, result[1]]];
    } else if (resultType === 'matrix') {
      rows = result.map((s) => [seriesName(s.metric), s.values.map(([t, v]) => `${v} @${t}`).join('\n')]);
    } else {
      rows = result.map((s) => [seriesName(s.metric), s.value[1]]);
    }
    if (!rows.length) {
      showEmpty(out, 'The query returned no series.', 'Check the metric name and labels, or try the Graph view for older data.');
      return;
    }
    out.replaceChildren(...warningsOf(body), h('table', { class: 'prom-table' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Series'), h('th', { class: 'num' }, 'Value'))),
      h('tbody', {}, rows.map(([name, value]) => h('tr', {},
        h('td', { class: 'mono' }, name), h('td', { class: 'num mono' }, h('pre', {}, value)))))));
  }

  await run();
  return () => chart?.destroy();
}

function warningsOf(body) {
  return (body.warnings ?? []).map((w) => h('div', { class: 'state warn-note', role: 'note' }, w));
}

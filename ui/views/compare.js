// Two traces compared: spans matched by their service/operation path from the root
// (`/api/v1/traces/compare`), each path added, removed, slower, faster or the same.
// Reached as `/trace/{a}...{b}` (Jaeger UI's URL) or `/compare?a=&b=`.

import { navigate } from '../app.js';
import { h, getJSON, showLoading, showError, showEmpty, fmtDuration, serviceColor } from '../util.js';

const ID = /^[0-9a-fA-F]{1,32}$/;

export async function render(root, { params, match, signal }) {
  const a = (match[2] ? match[1] : params.get('a') || '').toLowerCase();
  const b = (match[2] ? match[2] : params.get('b') || '').toLowerCase();
  const out = h('div', { class: 'cmp-result' });
  root.append(h('div', { class: 'cmp-view' }, h('h1', {}, 'Compare traces'), pickForm(a, b), out));
  if (!a || !b) {
    showEmpty(out, 'Choose two traces.',
      'Paste two trace ids above, or tick two traces in the ', h('a', { href: '/search' }, 'search results'), '.');
    return;
  }
  showLoading(out, 'Comparing…');
  let diff;
  try {
    diff = await getJSON('/api/v1/traces/compare', { a, b }, { signal });
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    showError(out, err);
    return;
  }
  showDiff(out, diff);
}

function pickForm(a, b) {
  const input = (name, value, label) => h('label', {}, label, h('input', {
    name, value, required: true, pattern: ID.source.slice(1, -1), size: 34, spellcheck: 'false',
    placeholder: '32 hex characters', 'data-primary-input': name === 'a' ? true : null,
  }));
  const form = h('form', {
    class: 'row cmp-form',
    onsubmit: (event) => {
      event.preventDefault();
      const data = new FormData(form);
      navigate(`/trace/${String(data.get('a')).trim()}...${String(data.get('b')).trim()}`);
    },
  }, input('a', a, 'Trace A'), input('b', b, 'Trace B'),
  h('button', { type: 'submit', class: 'primary' }, 'Compare'));
  return form;
}

/** Added and removed as the API says; otherwise slower or faster by the duration change. */
function kind(row) {
  if (row.change === 'added' || row.change === 'removed') return row.change;
  if (row.change === 'same') return 'same';
  return row.deltaNanos > 0 ? 'slower' : row.deltaNanos < 0 ? 'faster' : 'changed';
}

function showDiff(out, diff) {
  const rows = diff.paths.map((p) => ({ ...p, kind: kind(p) }));
  const counts = {};
  for (const r of rows) counts[r.kind] = (counts[r.kind] ?? 0) + 1;
  const hideSame = h('input', { type: 'checkbox' });
  const order = h('select', { 'aria-label': 'Order' },
    h('option', { value: 'change' }, 'Biggest change first'),
    h('option', { value: 'tree' }, 'Tree order'));
  const table = h('div', { class: 'cmp-table-box' });
  const draw = () => {
    const shown = rows.filter((r) => !hideSame.checked || r.kind !== 'same');
    if (order.value === 'tree') shown.sort((x, y) => x.path.join('\n').localeCompare(y.path.join('\n')));
    if (!shown.length) {
      showEmpty(table, 'No differences.', 'Both traces have the same span paths, counts and durations (within 10%).');
      return;
    }
    table.replaceChildren(diffTable(shown, order.value === 'tree'));
  };
  hideSame.addEventListener('change', draw);
  order.addEventListener('change', draw);

  out.replaceChildren(
    h('div', { class: 'cmp-heads' }, traceHead('A', diff.a, rows, 'countA'), traceHead('B', diff.b, rows, 'countB')),
    h('div', { class: 'toolbar' },
      ['added', 'removed', 'slower', 'faster', 'changed', 'same'].filter((k) => counts[k]).map((k) =>
        h('span', { class: `cmp-count ${k}` }, `${counts[k]} ${k}`)),
      h('span', { class: 'spacer' }),
      h('label', { class: 'inline' }, hideSame, 'hide unchanged'), order,
      h('a', { href: `/trace/${diff.b.traceId}...${diff.a.traceId}` }, 'Swap A and B')),
    table);
  draw();
}

/** A trace's summary: its root path (the one path of length 1), span count and duration. */
function traceHead(label, t, rows, countKey) {
  const root = rows.find((r) => r.path.length === 1 && r[countKey] > 0)?.path[0] ?? '';
  return h('div', { class: 'panel cmp-head' },
    h('div', {}, h('strong', {}, `Trace ${label} `), h('a', { href: `/trace/${t.traceId}` }, h('code', {}, t.traceId))),
    h('div', {}, pathLabel(root)),
    h('div', { class: 'muted' }, `${t.spanCount} spans · ${fmtDuration(t.durationNanos)}`));
}

/** `service: operation`, the service in its colour. */
function pathLabel(step) {
  const at = step.indexOf(': ');
  if (at < 0) return step;
  const service = step.slice(0, at);
  return h('span', {}, h('span', { class: 'cmp-svc', style: { color: serviceColor(service) } }, service), `: ${step.slice(at + 2)}`);
}

/** `+25.0ms (+78%), count +1`, or added / removed. */
function changeText(r) {
  if (r.kind === 'added' || r.kind === 'removed') return r.kind;
  const sign = (n) => (n > 0 ? '+' : n < 0 ? '−' : '');
  const pct = r.durationANanos ? ` (${sign(r.deltaNanos)}${Math.abs(Math.round((r.deltaNanos / r.durationANanos) * 100))}%)` : '';
  const count = r.countB - r.countA;
  return `${sign(r.deltaNanos)}${fmtDuration(Math.abs(r.deltaNanos))}${pct}${count ? `, count ${sign(count)}${Math.abs(count)}` : ''}`;
}

function diffTable(rows, indent) {
  return h('table', { class: 'cmp-table', 'data-testid': 'compare-table' },
    h('thead', {}, h('tr', {},
      h('th', {}, 'Span path'), h('th', { class: 'num' }, 'Count A'), h('th', { class: 'num' }, 'Count B'),
      h('th', { class: 'num' }, 'Duration A'), h('th', { class: 'num' }, 'Duration B'), h('th', { class: 'num' }, 'Change'))),
    h('tbody', {}, rows.map((r) => h('tr', { class: `cmp-row ${r.kind}`, dataset: { change: r.kind } },
      h('td', { class: 'cmp-path', title: r.path.join(' › ') },
        indent
          ? h('span', { style: { paddingLeft: `${(r.path.length - 1) * 16}px` } }, pathLabel(r.path.at(-1)))
          : r.path.map((step, n) => [n ? h('span', { class: 'muted' }, ' › ') : null, pathLabel(step)])),
      h('td', { class: 'num' }, String(r.countA)),
      h('td', { class: 'num' }, String(r.countB)),
      h('td', { class: 'num' }, r.countA ? fmtDuration(r.durationANanos) : '–'),
      h('td', { class: 'num' }, r.countB ? fmtDuration(r.durationBNanos) : '–'),
      h('td', { class: 'num cmp-delta' }, changeText(r))))));
}

// The span detail panel: a span's facts, attributes, resource, events, links, status, and the
// span's own logs from the log store.

import { h, fmtDuration, fmtTime, serviceChip, nsToMs } from '../../util.js';
import {
  SPAN_KINDS, STATUS, anyValue, valueText, logfmtValue, selfNanosOf, skewText,
} from './model.js';

export function renderDetail(model, span, { close, goTo }) {
  const { raw } = span;
  const status = STATUS[raw.status?.code ?? 0] ?? String(raw.status?.code);
  const searchLink = (key, value) => h('a', {
    class: 'tv-attr-search', title: 'Search traces with this attribute',
    href: `/search?${new URLSearchParams({ service: span.service, tags: `${key}=${logfmtValue(valueText(value))}` })}`,
  }, '⌕');
  const kvTable = (attributes, withSearch, testid) => (attributes?.length
    ? h('table', { class: 'kv', 'data-testid': testid },
      h('tbody', {}, attributes.map((kv) => {
        const value = anyValue(kv.value);
        return h('tr', {}, h('td', {}, kv.key), h('td', {}, valueText(value), withSearch ? searchLink(kv.key, value) : null));
      })))
    : h('p', { class: 'muted', 'data-testid': testid }, 'none'));
  const parent = span.parent >= 0 ? model.spans[span.parent] : null;
  return [
    h('div', { class: 'tv-detail-head' },
      h('h2', {}, span.name),
      h('button', { type: 'button', class: 'tv-close', 'aria-label': 'Close span detail', onclick: close }, '×')),
    h('table', { class: 'kv' }, h('tbody', {},
      kvRow('Service', serviceChip(span.service)),
      kvRow('Duration', fmtDuration(span.end - span.start)),
      kvRow('Start', `+${fmtDuration(span.start)}`),
      kvRow('Self time', fmtDuration(selfNanosOf(model, span))),
      kvRow('Kind', SPAN_KINDS[raw.kind ?? 0] ?? String(raw.kind)),
      kvRow('Status', h('span', { class: span.error ? 'error-text' : '' }, status, raw.status?.message ? `: ${raw.status.message}` : '')),
      kvRow('Span id', span.id),
      kvRow('Parent', parent
        ? h('button', { type: 'button', class: 'tv-linkish', onclick: () => goTo(span.parent) }, `${parent.service}: ${parent.name}`)
        : span.parentId ? `${span.parentId} (not in this trace)` : 'none (root)'),
      span.skew ? kvRow('Clock skew', h('span', { class: 'tv-skew' }, skewText(span))) : null,
      kvRow('Scope', [span.scope?.name, span.scope?.version].filter(Boolean).join(' ') || '–'))),
    h('h3', {}, 'Attributes'),
    kvTable(raw.attributes, true, 'span-attributes'),
    h('h3', {}, 'Resource'),
    kvTable(span.resource.attributes, false, 'span-resource'),
    h('h3', {}, `Events (${raw.events?.length ?? 0})`),
    (raw.events ?? []).length ? h('ul', { class: 'tv-events' }, raw.events.map((ev) => {
      const t = model.rel(ev.timeUnixNano);
      return h('li', {},
        h('div', {}, h('strong', {}, ev.name), ' ',
          h('span', { class: 'muted' }, `+${fmtDuration(t - span.start)} in the span, +${fmtDuration(t)} in the trace`)),
        ev.attributes?.length ? kvTable(ev.attributes, false) : null);
    })) : h('p', { class: 'muted' }, 'none'),
    h('h3', {}, `Links (${raw.links?.length ?? 0})`),
    (raw.links ?? []).length ? h('ul', { class: 'tv-links' }, raw.links.map((link) => h('li', {},
      h('a', { href: `/trace/${link.traceId}?uiFind=${link.spanId}` }, `${link.traceId} / ${link.spanId}`),
      link.attributes?.length ? kvTable(link.attributes, false) : null))) : h('p', { class: 'muted' }, 'none'),
    h('h3', {}, 'Logs'),
    h('div', { 'data-testid': 'span-logs', class: 'tv-logs' }, h('p', { class: 'muted', 'data-testid': 'loading' }, 'Loading logs…')),
  ];
}

function kvRow(key, value) {
  return h('tr', {}, h('td', {}, key), h('td', {}, value));
}

export function fillLogs(box, answer, span, traceId) {
  const mine = (answer.data ?? []).filter((log) => log.spanId === span.id);
  const all = answer.data?.length ?? 0;
  const query = (q) => `/logs?query=${encodeURIComponent(q)}`;
  const links = h('p', { class: 'muted' },
    h('a', { href: query(`trace_id:${traceId} AND span_id:${span.id}`) }, 'Open in logs'),
    ` · ${all} log${all === 1 ? '' : 's'} in the whole trace: `,
    h('a', { href: query(`trace_id:${traceId}`) }, 'all logs of the trace'));
  if (!mine.length) {
    box.replaceChildren(h('p', { class: 'muted', 'data-testid': 'empty' }, 'No logs for this span.'), links);
    return;
  }
  box.replaceChildren(h('ul', { class: 'tv-loglist' }, mine.map((log) => {
    const ms = nsToMs(log.timeUnixNano && log.timeUnixNano !== '0' ? log.timeUnixNano : log.observedTimeUnixNano);
    return h('li', { 'data-testid': 'span-log', class: `sev-${log.severity.toLowerCase()}` },
      h('span', { class: 'mono muted' }, fmtTime(ms).slice(11)),
      h('span', { class: 'badge tv-sev' }, log.severityText || log.severity),
      h('span', { class: 'tv-logbody' }, typeof log.body === 'string' ? log.body : JSON.stringify(log.body)));
  })), ...(answer.warnings ?? []).map((w) => h('p', { class: 'muted' }, w)), links);
}

// The model of one trace: OTLP/JSON resourceSpans flattened into spans with times relative to
// the trace start, the tree built once in O(n), and the analysis (critical path, error path,
// self time, clock skew) applied onto it. No DOM.

import { fmtDuration } from '../../util.js';

export const SPAN_KINDS = ['unspecified', 'internal', 'server', 'client', 'producer', 'consumer'];
export const STATUS = ['unset', 'ok', 'error'];

/**
 * Unix nanoseconds (decimal text) as [seconds, nanoseconds]: exact, where Number(text) would
 * round to 256 ns.
 */
function splitNanos(text) {
  const s = String(text ?? '0');
  return s.length > 9 ? [Number(s.slice(0, -9)), Number(s.slice(-9))] : [0, Number(s)];
}

/** Flattens OTLP/JSON resourceSpans into spans with times relative to the trace start. */
export function buildModel(trace) {
  const spans = [];
  for (const rs of trace.resourceSpans ?? []) {
    const resource = rs.resource ?? {};
    const service = attrText(resource.attributes, 'service.name') ?? 'unknown_service';
    for (const ss of rs.scopeSpans ?? []) {
      for (const raw of ss.spans ?? []) {
        spans.push({
          raw, resource, scope: ss.scope, service,
          id: raw.spanId ?? '', parentId: raw.parentSpanId ?? '', name: raw.name ?? '',
          error: raw.status?.code === 2 || raw.status?.code === 'STATUS_CODE_ERROR',
          start: 0, end: 0, depth: 0, parent: -1, children: null,
          critical: null, onErrorPath: false, skew: null, searchText: null,
        });
      }
    }
  }
  let [baseSec, baseNs] = [Infinity, 0];
  for (const span of spans) {
    const [sec, ns] = splitNanos(span.raw.startTimeUnixNano);
    if (sec < baseSec || (sec === baseSec && ns < baseNs)) [baseSec, baseNs] = [sec, ns];
  }
  const rel = (text) => {
    const [sec, ns] = splitNanos(text);
    return (sec - baseSec) * 1e9 + (ns - baseNs);
  };
  const byId = new Map();
  let endMax = 0;
  spans.forEach((span, i) => {
    span.start = rel(span.raw.startTimeUnixNano);
    span.end = Math.max(span.start, rel(span.raw.endTimeUnixNano));
    endMax = Math.max(endMax, span.end);
    if (!byId.has(span.id)) byId.set(span.id, i);
  });

  const roots = [];
  const byStart = (a, b) => spans[a].start - spans[b].start || a - b;
  spans.forEach((span, i) => {
    const parent = span.parentId && span.parentId !== span.id ? byId.get(span.parentId) : undefined;
    if (parent === undefined || parent === i) {
      roots.push(i);
    } else {
      span.parent = parent;
      (spans[parent].children ??= []).push(i);
    }
  });
  for (const span of spans) span.children?.sort(byStart);
  roots.sort(byStart);

  // Depth-first order with an explicit stack: a chain of 50,000 spans must not overflow.
  // Spans in a parent cycle are unreachable from the roots; they are made roots afterwards.
  const seen = new Uint8Array(spans.length);
  let maxDepth = 0;
  const walk = (root) => {
    const stack = [root];
    spans[root].depth = 0;
    while (stack.length) {
      const i = stack.pop();
      if (seen[i]) continue;
      seen[i] = 1;
      const span = spans[i];
      maxDepth = Math.max(maxDepth, span.depth);
      const kids = span.children;
      if (kids) {
        for (let k = kids.length - 1; k >= 0; k--) {
          spans[kids[k]].depth = span.depth + 1;
          stack.push(kids[k]);
        }
      }
    }
  };
  roots.forEach(walk);
  for (let i = 0; i < spans.length; i++) {
    if (seen[i]) continue;
    const p = spans[i].parent;
    if (p >= 0) spans[p].children = spans[p].children.filter((c) => c !== i);
    spans[i].parent = -1;
    roots.push(i);
    walk(i);
  }

  const services = new Map();
  let errors = 0;
  for (const span of spans) {
    const entry = services.get(span.service) ?? { spans: 0, errors: 0 };
    entry.spans += 1;
    if (span.error) { entry.errors += 1; errors += 1; }
    services.set(span.service, entry);
  }
  return {
    spans, roots, byId, services, errors, maxDepth, duration: endMax,
    startSec: baseSec, startNs: baseNs, rel,
  };
}

/** Copies critical path segments, the error path and clock skew onto the spans. */
export function applyAnalysis(model, analysis) {
  const { spans, byId, rel } = model;
  for (const seg of analysis.criticalPath ?? []) {
    const span = spans[byId.get(seg.spanId)];
    if (span) (span.critical ??= []).push([rel(seg.startUnixNano), rel(seg.endUnixNano)]);
  }
  for (const step of analysis.errorPath ?? []) {
    const span = spans[byId.get(step.spanId)];
    if (span) span.onErrorPath = true;
  }
  for (const w of analysis.warnings ?? []) {
    const span = spans[byId.get(w.spanId)];
    if (w.type === 'clock_skew' && span) {
      span.skew = { ...w, adjustedStart: rel(w.adjustedStartUnixNano) };
    }
  }
}

/** The parts of a span not covered by its children: its self time, as [from, to] pairs. */
export function selfSegments(model, span) {
  if (span.selfSegments) return span.selfSegments;
  const out = [];
  let cursor = span.start;
  for (const c of span.children ?? []) {
    const child = model.spans[c];
    // Clamped: a child outside its parent (clock skew) covers none of it.
    const from = Math.min(Math.max(child.start, span.start), span.end);
    const to = Math.max(Math.min(child.end, span.end), span.start);
    if (from > cursor) out.push([cursor, from]);
    cursor = Math.max(cursor, to);
  }
  if (cursor < span.end) out.push([cursor, span.end]);
  span.selfSegments = out;
  return out;
}

export function selfNanosOf(model, span) {
  return selfSegments(model, span).reduce((sum, [a, b]) => sum + b - a, 0);
}

// ---- OTLP values ------------------------------------------------------------------------

export function anyValue(v) {
  if (!v) return null;
  if ('stringValue' in v) return v.stringValue;
  if ('intValue' in v) return Number.isSafeInteger(Number(v.intValue)) ? Number(v.intValue) : String(v.intValue);
  if ('doubleValue' in v) return v.doubleValue;
  if ('boolValue' in v) return v.boolValue;
  if ('bytesValue' in v) return v.bytesValue;
  if ('arrayValue' in v) return (v.arrayValue?.values ?? []).map(anyValue);
  if ('kvlistValue' in v) return Object.fromEntries((v.kvlistValue?.values ?? []).map((kv) => [kv.key, anyValue(kv.value)]));
  return null;
}

export function valueText(value) {
  return typeof value === 'string' ? value : JSON.stringify(value);
}

function attrText(attributes, key) {
  const found = (attributes ?? []).find((kv) => kv.key === key);
  return found ? valueText(anyValue(found.value)) : null;
}

/** A logfmt value as the search form reads it. */
export function logfmtValue(text) {
  return /^[^\s"=]+$/.test(text) ? text : `"${text.replace(/["\\]/g, '\\$&')}"`;
}

/** Remembers attribute keys seen, for the search form's autocomplete (bounded). */
export function recordAttributeKeys(model) {
  const keys = new Set(JSON.parse(localStorage.getItem('sightline.attrKeys') || '[]'));
  const limit = Math.min(model.spans.length, 500); // a sample is enough, and cheap
  for (let i = 0; i < limit; i++) {
    for (const kv of model.spans[i].raw.attributes ?? []) keys.add(kv.key);
  }
  localStorage.setItem('sightline.attrKeys', JSON.stringify([...keys].slice(-300)));
}

export function skewText(span) {
  const { skew } = span;
  return `Clock skew: this span lies outside its parent (starts ${fmtDuration(skew.startsBeforeParentNanos)} before it, `
    + `ends ${fmtDuration(skew.endsAfterParentNanos)} after it). Raw start +${fmtDuration(span.start)}, `
    + `adjusted start +${fmtDuration(skew.adjustedStart)}.`;
}

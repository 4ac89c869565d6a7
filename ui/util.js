// Shared helpers of the views: DOM building, API calls, formatting, service colours, and the
// loading / error / empty states every view shows the same way.

/**
 * Builds an element: `h('a', {href, class, onclick, dataset: {x: 1}}, child, ...)`.
 * Children may be strings, nodes, arrays, or null/false (skipped). Text is never parsed as HTML.
 */
export function h(tag, attrs = {}, ...children) {
  const el = tag.includes(':')
    ? document.createElementNS('http://www.w3.org/2000/svg', tag.split(':')[1])
    : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (key === 'style' && typeof value === 'object') {
      // setProperty, because assigning a custom property (`--c`) to el.style is ignored.
      for (const [name, v] of Object.entries(value)) {
        if (name.startsWith('--')) el.style.setProperty(name, v);
        else el.style[name] = v;
      }
    } else if (key === 'value' && 'value' in el) {
      el.value = value;
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

/** `h` for SVG elements: `svg('rect', {x, y})`. */
export function svg(tag, attrs = {}, ...children) {
  return h(`svg:${tag}`, attrs, ...children);
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** An API answer that was not 2xx: the status and the server's message. */
export class ApiError extends Error {
  constructor(status, message, url) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.url = url;
  }
}

/**
 * GETs `path` with `params` (as getJSON takes them), asking for JSON; resolves to the URL and
 * the response whatever its status. A server that does not answer is an ApiError that says so.
 */
export async function request(path, params = {}, signal = undefined) {
  const url = new URL(path, location.origin);
  const entries = params instanceof URLSearchParams ? [...params] : Object.entries(params);
  for (const [key, value] of entries) {
    for (const v of Array.isArray(value) ? value : [value]) {
      if (v !== undefined && v !== null && v !== '') url.searchParams.append(key, v);
    }
  }
  try {
    return { url, response: await fetch(url, { signal, headers: { accept: 'application/json' } }) };
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError(0, `Sightline did not answer (${err.message}). Is the server running?`, url);
  }
}

/**
 * GETs JSON from `path` with `params` (an object or URLSearchParams; arrays repeat the key;
 * empty values are left out). Errors carry the server's own message: the native API's
 * `{error: {message}}`, Prometheus' `{error}`, Jaeger's `{errors: [{msg}]}`.
 */
export async function getJSON(path, params = {}, { signal } = {}) {
  const { url, response } = await request(path, params, signal);
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (!response.ok) {
    const message = body?.error?.message ?? (typeof body?.error === 'string' ? body.error : null)
      ?? body?.errors?.[0]?.msg ?? (text.trim() || response.statusText);
    throw new ApiError(response.status, message, url);
  }
  if (body === null && text) throw new ApiError(response.status, 'the answer was not JSON', url);
  return body;
}

// ---- states -------------------------------------------------------------------------------

/** Replaces `el`'s content with a loading line. */
export function showLoading(el, what = 'Loading…') {
  el.replaceChildren(h('div', { class: 'state loading', role: 'status', 'data-testid': 'loading' },
    h('span', { class: 'spinner', 'aria-hidden': 'true' }), what));
}

/** Replaces `el`'s content with what went wrong, in words. */
export function showError(el, err) {
  const status = err?.status ? `HTTP ${err.status}: ` : '';
  el.replaceChildren(h('div', { class: 'state error', role: 'alert', 'data-testid': 'error' },
    h('strong', {}, 'Something went wrong. '), `${status}${err?.message ?? err}`));
}

/** Replaces `el`'s content with an empty state: a title and what to do about it. */
export function showEmpty(el, title, ...what) {
  el.replaceChildren(h('div', { class: 'state empty', 'data-testid': 'empty' },
    h('strong', {}, title), ' ', ...what));
}

/** The empty state of a Sightline that has received nothing yet. */
export function noDataYet(signal = 'traces') {
  return [
    `No ${signal} yet: point your OTLP exporter at `, h('code', {}, `${location.hostname}:4317`),
    ' (gRPC) or ', h('code', {}, `http://${location.hostname}:4318`),
    ' (HTTP), or start Sightline with ', h('code', {}, '--demo'), '.',
  ];
}

// ---- formatting ---------------------------------------------------------------------------

/** A duration in nanoseconds, as people read it: 850µs, 12.3ms, 1.25s, 2m 5s. */
export function fmtDuration(ns) {
  ns = Number(ns);
  if (!Number.isFinite(ns)) return '–';
  const abs = Math.abs(ns);
  if (abs < 1e3) return `${Math.round(ns)}ns`;
  if (abs < 1e6) return `${trim(ns / 1e3)}µs`;
  if (abs < 1e9) return `${trim(ns / 1e6)}ms`;
  if (abs < 60e9) return `${trim(ns / 1e9)}s`;
  const s = Math.round(ns / 1e9);
  return s < 3600 ? `${Math.floor(s / 60)}m ${s % 60}s` : `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

function trim(x) {
  return x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2);
}

/** A point in time (milliseconds since the epoch) in local time, with milliseconds. */
export function fmtTime(ms) {
  const d = new Date(Number(ms));
  if (Number.isNaN(d.getTime())) return '–';
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} `
    + `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** "3 minutes ago" for a time in milliseconds. */
export function fmtAgo(ms) {
  const s = Math.round((Date.now() - Number(ms)) / 1000);
  if (s < 60) return `${Math.max(s, 0)}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

/** Nanoseconds since the epoch (a number or a decimal string) to milliseconds. */
export function nsToMs(ns) {
  return typeof ns === 'string' ? Number(BigInt(ns) / 1000000n) : Number(ns) / 1e6;
}

// ---- time ranges --------------------------------------------------------------------------

/** The presets of every time-range picker, Jaeger's `lookback` values. */
export const LOOKBACKS = [
  ['5m', '5 minutes'], ['15m', '15 minutes'], ['1h', '1 hour'], ['2h', '2 hours'],
  ['6h', '6 hours'], ['12h', '12 hours'], ['1d', '1 day'], ['2d', '2 days'], ['7d', '7 days'],
  ['custom', 'Custom…'],
];

const UNIT_MS = { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 7 * 86400e3 };

/** A lookback such as `1h` or `2d` in milliseconds, or null. */
export function lookbackMs(text) {
  const m = /^(\d+)([smhdw])$/.exec(text || '');
  return m ? Number(m[1]) * UNIT_MS[m[2]] : null;
}

/**
 * The [start, end] range in milliseconds of URL parameters `lookback` (default `fallback`) or
 * `start`/`end` (microseconds, as Jaeger UI writes them, or milliseconds / RFC 3339).
 */
export function rangeFromParams(params, fallback = '1h') {
  const lookback = params.get('lookback') || fallback;
  if (lookback === 'custom' || (!params.get('lookback') && params.get('start'))) {
    const start = parseInstant(params.get('start'));
    const end = parseInstant(params.get('end')) ?? Date.now();
    if (start !== null) return [start, end];
  }
  const end = Date.now();
  return [end - (lookbackMs(lookback) ?? lookbackMs(fallback)), end];
}

/** Microseconds (Jaeger UI), milliseconds, seconds or RFC 3339, to milliseconds. */
export function parseInstant(text) {
  if (!text) return null;
  if (/^\d+(\.\d+)?$/.test(text)) {
    const n = Number(text);
    if (n > 1e17) return n / 1e6; // ns
    if (n > 1e14) return n / 1e3; // µs
    if (n > 1e11) return n; // ms
    return n * 1e3; // s
  }
  const t = Date.parse(text);
  return Number.isNaN(t) ? null : t;
}

/** Milliseconds to the RFC 3339 text the native API takes. */
export function rfc3339(ms) {
  return new Date(ms).toISOString();
}

/** `datetime-local` input value of a time in milliseconds. */
export function toLocalInput(ms) {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60e3);
  return d.toISOString().slice(0, 16);
}

// ---- colours ------------------------------------------------------------------------------

const PALETTE = [
  '#3b82f6', '#10b981', '#f59e0b', '#8b5cf6', '#ec4899', '#14b8a6', '#f97316', '#6366f1',
  '#84cc16', '#06b6d4', '#a855f7', '#eab308', '#0ea5e9', '#22c55e', '#d946ef', '#64748b',
];
const assigned = new Map();

/** A stable colour per service name (the same name gets the same colour on every page). */
export function serviceColor(name) {
  if (!assigned.has(name)) {
    let hash = 2166136261;
    for (const ch of String(name)) hash = Math.imul(hash ^ ch.codePointAt(0), 16777619);
    assigned.set(name, PALETTE[(hash >>> 0) % PALETTE.length]);
  }
  return assigned.get(name);
}

/** A small coloured chip with a service name. */
export function serviceChip(name, extra) {
  return h('span', { class: 'chip', style: { '--c': serviceColor(name) } },
    h('span', { class: 'dot' }), name, extra ? h('span', { class: 'muted' }, ` ${extra}`) : null);
}

/** Copies text to the clipboard and flashes the button. */
export async function copyText(button, text) {
  try {
    await navigator.clipboard.writeText(text);
    button.dataset.flash = 'copied';
  } catch {
    button.dataset.flash = 'copy failed';
  }
  setTimeout(() => delete button.dataset.flash, 1200);
}

/** Debounces `fn` by `ms`. */
export function debounce(fn, ms = 250) {
  let timer;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

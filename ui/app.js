// Sightline's single page: a router from the URL to a view module in `views/`.
//
// Every view is a URL (Jaeger UI's where the view exists there: `/search`, `/trace/{id}`,
// `/trace/{a}...{b}`, `/dependencies`, `/monitor`; Prometheus' `/graph` for the PromQL box), so a
// view can be pasted to a colleague. A view module exports
// `render(root, {params, match, signal})`; it may return a cleanup function, called when the
// user leaves the view. `signal` aborts when the view is left, so late answers are dropped.

import { h, showError } from './util.js';

const routes = [
  { pattern: /^\/(search)?$/, view: 'search', nav: 'search' },
  { pattern: /^\/trace\/([0-9a-fA-F]+)\.\.\.([0-9a-fA-F]+)$/, view: 'compare', nav: 'compare' },
  { pattern: /^\/trace\/([0-9a-fA-F]+)$/, view: 'trace', nav: 'search' },
  { pattern: /^\/compare$/, view: 'compare', nav: 'compare' },
  { pattern: /^\/dependencies$/, view: 'dependencies', nav: 'dependencies' },
  { pattern: /^\/logs$/, view: 'logs', nav: 'logs' },
  { pattern: /^\/monitor$/, view: 'monitor', nav: 'monitor' },
  { pattern: /^\/graph$/, view: 'graph', nav: 'graph' },
];

let current = null; // { cleanup, controller }

/** Goes to `url` inside the page (pushState), or replaces the current entry. */
export function navigate(url, { replace = false } = {}) {
  const target = new URL(url, location.href);
  if (target.origin !== location.origin) {
    location.href = target.href;
    return;
  }
  if (replace) history.replaceState(null, '', target);
  else history.pushState(null, '', target);
  route();
}

/** Rewrites the query string of the current URL without re-rendering (a view's own state). */
export function setParams(params) {
  const url = new URL(location.href);
  url.search = new URLSearchParams(
    Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== ''),
  ).toString();
  history.replaceState(null, '', url);
}

async function route() {
  if (current) {
    current.controller.abort();
    try { current.cleanup?.(); } catch (err) { console.error(err); }
    current = null;
  }
  const root = document.getElementById('view');
  root.replaceChildren();
  const path = location.pathname.replace(/\/+$/, '') || '/';
  const found = routes.map((r) => ({ r, m: path.match(r.pattern) })).find((x) => x.m);
  for (const link of document.querySelectorAll('[data-nav]')) {
    link.classList.toggle('active', found?.r.nav === link.dataset.nav);
  }
  if (!found) {
    root.append(h('div', { class: 'empty' },
      h('h2', {}, 'Nothing here'),
      h('p', {}, `Sightline has no page at ${path}. `, h('a', { href: '/search' }, 'Search traces'), '.')));
    return;
  }
  const controller = new AbortController();
  const entry = { controller, cleanup: null };
  current = entry;
  try {
    const view = await import(`./views/${found.r.view}.js`);
    if (controller.signal.aborted) return;
    const params = new URLSearchParams(location.search);
    entry.cleanup = await view.render(root, { params, match: found.m, signal: controller.signal });
  } catch (err) {
    if (controller.signal.aborted || err?.name === 'AbortError') return;
    console.error(err);
    showError(root, err);
  }
}

// Links inside the page navigate without reloading it.
document.addEventListener('click', (event) => {
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey
    || event.shiftKey || event.altKey) return;
  const link = event.target.closest('a[href]');
  if (!link || link.target || link.hasAttribute('download')) return;
  const url = new URL(link.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith('/api/')
    || url.pathname.startsWith('/static/') || url.pathname === '/metrics') return;
  event.preventDefault();
  navigate(url);
});

window.addEventListener('popstate', route);

function toggleTheme() {
  const next = document.documentElement.dataset.theme === 'dark' ? 'light' : 'dark';
  document.documentElement.dataset.theme = next;
  localStorage.setItem('sightline.theme', next);
  window.dispatchEvent(new CustomEvent('sightline:theme', { detail: next }));
}
document.getElementById('theme-toggle').addEventListener('click', toggleTheme);

// Keyboard: `/` focuses the view's main input (marked `data-primary-input`), `t` switches theme.
document.addEventListener('keydown', (event) => {
  const typing = event.target.closest?.('input, textarea, select, [contenteditable]');
  if (typing || event.metaKey || event.ctrlKey || event.altKey) return;
  if (event.key === '/') {
    const input = document.querySelector('[data-primary-input]');
    if (input) {
      event.preventDefault();
      input.focus();
      input.select?.();
    }
  } else if (event.key === 't') {
    toggleTheme();
  }
});

route();

// uPlot wrapped for Sightline: a time-series line chart that fills its container's width,
// takes its colours from the theme variables (so it is redrawn when the theme changes) and shows
// a legend with the value of every series under the cursor.

import uPlot from './vendor/uplot/uPlot.esm.js';
import { h } from './util.js';

/** Series colours in order; `var(--x)` values are resolved against the current theme. */
export const SERIES_COLORS = [
  '#3b82f6', '#f59e0b', '#10b981', '#ec4899', '#8b5cf6', '#14b8a6', '#f97316', '#6366f1',
  '#84cc16', '#06b6d4', '#a855f7', '#eab308', '#0ea5e9', '#22c55e', '#d946ef', '#64748b',
];

function cssColor(value) {
  const m = /^var\((--[\w-]+)\)$/.exec(value || '');
  if (!m) return value;
  return getComputedStyle(document.documentElement).getPropertyValue(m[1]).trim() || '#888';
}

/** A compact number: 0.0123, 1.23, 123, 12.3k, 1.23M. */
export function fmtNumber(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return '–';
  const abs = Math.abs(v);
  if (abs >= 1e9) return `${+(v / 1e9).toPrecision(3)}G`;
  if (abs >= 1e6) return `${+(v / 1e6).toPrecision(3)}M`;
  if (abs >= 1e4) return `${+(v / 1e3).toPrecision(3)}k`;
  if (abs === 0) return '0';
  return String(+v.toPrecision(3));
}

/**
 * Draws a time-series chart into `el`.
 *  - `series`: [{label, color?, dash?}] (colour defaults to SERIES_COLORS in order)
 *  - `data`: [times in seconds, values of series 1, ...] with null for gaps
 *  - `format`: formats a y value for the axis and the legend
 *  - `xRange`: [start, end] in seconds: the x axis spans the range asked for, not only the data
 * Returns `{ setData(data), destroy() }`.
 */
export function timeChart(el, { series, data, height = 220, format = fmtNumber, xRange }) {
  el.classList.add('chart');
  // Test hooks (ui/README.md): every chart says how many series it draws.
  el.dataset.testid = 'metrics-chart';
  el.dataset.series = String(series.length);
  let plot = null;
  let current = data;

  const build = () => {
    plot?.destroy();
    const muted = cssColor('var(--fg-muted)');
    const grid = cssColor('var(--border)');
    const axis = {
      stroke: muted,
      grid: { stroke: grid, width: 1 },
      ticks: { stroke: grid, width: 1 },
      font: '11px system-ui, sans-serif',
    };
    plot = new uPlot({
      width: Math.max(el.clientWidth, 200),
      height,
      scales: { x: { time: true, range: xRange ? () => xRange : undefined }, y: { range: (u, min, max) => [Math.min(0, min), max > 0 ? max * 1.1 : 1] } },
      axes: [axis, { ...axis, size: 56, values: (u, ticks) => ticks.map(format) }],
      series: [
        { value: (u, t) => (t === null ? '–' : new Date(t * 1000).toLocaleTimeString()) },
        ...series.map((s, i) => ({
          label: s.label,
          stroke: cssColor(s.color ?? SERIES_COLORS[i % SERIES_COLORS.length]),
          width: 1.5,
          dash: s.dash,
          value: (u, v) => format(v),
        })),
      ],
      legend: { live: true },
      cursor: { drag: { x: true, y: false } },
    }, current, el);
  };

  build();
  // Only the width follows the container; the height is the caller's.
  let lastWidth = el.clientWidth;
  const resize = new ResizeObserver(() => {
    if (!plot || el.clientWidth === lastWidth) return;
    lastWidth = el.clientWidth;
    plot.setSize({ width: Math.max(lastWidth, 200), height });
  });
  resize.observe(el);
  // Canvas colours are fixed when drawn: a theme change needs a new chart.
  window.addEventListener('sightline:theme', build);

  return {
    setData(next) {
      current = next;
      plot.setData(next);
    },
    destroy() {
      resize.disconnect();
      window.removeEventListener('sightline:theme', build);
      plot?.destroy();
      plot = null;
    },
  };
}

/**
 * Prometheus matrix results (`[{metric, values: [[t, "v"]]}]`) as uPlot data: one shared,
 * sorted time axis, null where a series has no sample.
 */
export function matrixToData(result) {
  const times = [...new Set(result.flatMap((s) => s.values.map(([t]) => t)))].sort((a, b) => a - b);
  const index = new Map(times.map((t, i) => [t, i]));
  const columns = result.map((s) => {
    const column = new Array(times.length).fill(null);
    for (const [t, v] of s.values) {
      const n = Number(v);
      column[index.get(t)] = Number.isFinite(n) ? n : null;
    }
    return column;
  });
  return [times, ...columns];
}

/** A rate per second as people read it: 12.3/s, or 4.5/min when below one per second. */
export function fmtRate(perSecond) {
  if (!Number.isFinite(perSecond)) return '–';
  if (perSecond === 0 || perSecond >= 1) return `${fmtNumber(perSecond)}/s`;
  return perSecond * 60 >= 1 ? `${fmtNumber(perSecond * 60)}/min` : `${fmtNumber(perSecond * 3600)}/h`;
}

/** A titled chart panel: `chartPanel('Requests / s')` → {el, body}. */
export function chartPanel(title, ...extra) {
  const body = h('div', { class: 'chart-body' });
  const el = h('section', { class: 'panel chart-panel' }, h('h3', {}, title, ...extra), body);
  return { el, body };
}

// Charts of the agent's short history (GET /history, /services/{id}/history), drawn with
// uPlot, vendored in /static/vendor/uplot (no request leaves the machine). The history
// comes in columns, which is uPlot's own shape: [times, values, values...].
//
// A chart takes its container's width and follows it (a phone turned sideways redraws);
// a sparkline is a chart without axes, legend or cursor.

import uPlot from '/static/vendor/uplot/uPlot.esm.js';
import { bytes } from './format.js';

const COLORS = { line: '#2563eb', limit: '#b91c1c', error: '#b91c1c', fill: '#2563eb22' };

const follow = new ResizeObserver((entries) => {
  for (const entry of entries) {
    const plot = entry.target.uplot;
    const width = Math.floor(entry.contentRect.width);
    if (plot && width > 0 && width !== plot.width) plot.setSize({ width, height: plot.height });
  }
});

function place(container, plot) {
  container.uplot = plot;
  follow.observe(container);
}

/** Replace what `container` draws with a small line of `values` over `times`. */
export function sparkline(container, times, values, label) {
  const data = [times, values];
  if (container.uplot) {
    container.uplot.setData(data);
    return;
  }
  const plot = new uPlot(
    {
      width: Math.max(60, container.clientWidth || 96),
      height: 24,
      class: 'sparkline-plot',
      legend: { show: false },
      cursor: { show: false },
      select: { show: false },
      axes: [{ show: false }, { show: false }],
      scales: { x: { time: true }, y: { range: (_u, min, max) => [0, Math.max(max, min, 1e-9)] } },
      series: [{}, { label, stroke: COLORS.line, fill: COLORS.fill, width: 1, points: { show: false } }],
    },
    data,
    container,
  );
  place(container, plot);
}

const formats = {
  bytes: (value) => (value === null || value === undefined ? '—' : bytes(value)),
  cores: (value) => (value === null || value === undefined ? '—' : `${(value * 100).toFixed(1)} %`),
  rate: (value) => (value === null || value === undefined ? '—' : `${value.toFixed(2)}/s`),
  seconds: (value) =>
    value === null || value === undefined ? '—' : `${(value * 1000).toFixed(value < 0.01 ? 1 : 0)} ms`,
};

// The y axis is as wide as its longest label ("268.4 MiB"), measured in the chart's font.
function labelWidth(plot, labels) {
  if (!labels?.length) return 40;
  const context = plot.ctx;
  context.font = plot.axes[1].font?.[0] ?? '12px system-ui';
  const widest = Math.max(...labels.map((label) => context.measureText(label).width));
  return Math.ceil(widest / devicePixelRatio) + 18;
}

/**
 * A chart of one or more lines over `times` in `container`:
 * chart(el, times, [{label, values, kind: 'limit' | 'error' | undefined}], 'bytes').
 */
export function chart(container, times, lines, format) {
  const data = [times, ...lines.map((line) => line.values)];
  const key = lines.map((line) => line.label).join('|');
  if (container.uplot && container.dataset.lines === key) {
    container.uplot.setData(data);
    return;
  }
  container.uplot?.destroy();
  container.replaceChildren();
  container.dataset.lines = key;
  const show = formats[format];
  const plot = new uPlot(
    {
      width: Math.max(200, container.clientWidth || 320),
      height: 160,
      class: 'history-plot',
      scales: { y: { range: (_u, min, max) => [0, Math.max(max, min, 1e-9) * 1.1] } },
      legend: { live: false },
      axes: [{}, { size: labelWidth, values: (_u, ticks) => ticks.map(show) }],
      series: [
        {},
        ...lines.map((line) => ({
          label: line.label,
          stroke: COLORS[line.kind] ?? COLORS.line,
          dash: line.kind === 'limit' ? [6, 4] : undefined,
          fill: line.kind ? undefined : COLORS.fill,
          width: 1.5,
          value: (_u, value) => show(value),
          spanGaps: false,
        })),
      ],
    },
    data,
    container,
  );
  place(container, plot);
}

// Charts over labelled periods ("2025-03-03", "2025-W10", "2025-03") with uPlot.
// The x axis is the period's index; labels name the ticks and the legend. Each chart's
// container keeps its uPlot instance (`.uplot`) and labels (`.labels`), so what is drawn
// can be read back (the browser tests compare it with the API's figures).
import uPlot from "../vendor/uplot/uPlot.esm.js";

export const COLOURS = ["#1f6fb2", "#d9822b", "#2e8b57", "#9b59b6", "#c0392b", "#7f8c8d"];

function width(container) {
  return Math.max(320, container.clientWidth || 640);
}

// The x scale of periods: each label one step, half a step of room on both sides
// (uPlot would otherwise pad a single period into a wide range of its own).
function periodScale(labels) {
  return { time: false, range: () => [-0.5, labels.length - 0.5] };
}

function periodAxis(labels) {
  return {
    values: (u, ticks) => ticks.map((t) => (Number.isInteger(t) ? labels[t] ?? "" : "")),
    incrs: [1, 2, 5, 7, 10, 14, 30, 60, 90, 180, 365],
    space: 60,
  };
}

function mount(container, options, data, labels) {
  container.uplot?.destroy();
  container.replaceChildren();
  const chart = new uPlot({ ...options, width: width(container) }, data, container);
  container.uplot = chart;
  container.labels = labels;
  if (!container.resizer) {
    container.resizer = new ResizeObserver(() => {
      container.uplot?.setSize({ width: width(container), height: container.uplot.height });
    });
    container.resizer.observe(container);
  }
  return chart;
}

// Options shared by the period charts: the ordinal x axis, the legend's period name.
function overPeriods(labels, height, scales, series) {
  return {
    height,
    scales: { x: periodScale(labels), ...scales },
    axes: [periodAxis(labels), {}],
    series: [{ label: "period", value: (u, i) => (i === null ? "" : labels[i] ?? "") }, ...series],
  };
}

function colour(s, i) {
  return s.colour || COLOURS[i % COLOURS.length];
}

// One line per entry of `series` ({label, values, colour?}); gaps where a value is null.
export function periodLines(container, labels, series, { height = 260, range = null } = {}) {
  const options = overPeriods(labels, height, { y: range ? { range: () => range } : {} },
    series.map((s, i) => ({ label: s.label, stroke: colour(s, i), width: 2, points: { size: 7 } })));
  return mount(container, options, [labels.map((_, i) => i), ...series.map((s) => s.values)],
    labels);
}

// Bars per period: one series centred, two side by side (left and right of the tick).
export function periodBars(container, labels, series, { height = 180 } = {}) {
  const slot = 0.8 / series.length;
  const align = (i) => (series.length === 1 ? 0 : i === 0 ? -1 : 1);
  const options = overPeriods(labels, height, {}, series.map((s, i) => ({
    label: s.label,
    stroke: colour(s, i),
    fill: `${colour(s, i)}99`,
    paths: uPlot.paths.bars({ size: [slot, 48], align: align(i) }),
    points: { show: false },
  })));
  return mount(container, options, [labels.map((_, i) => i), ...series.map((s) => s.values)],
    labels);
}

// A line chart over wall-clock time (seconds), for samples taken while the page is open;
// at least the last minute is shown.
export function timeLines(container, times, series, { height = 200 } = {}) {
  const options = {
    height,
    scales: { x: { time: true, range: (u) => [Math.min(times[0], times.at(-1) - 60), times.at(-1)] } },
    series: [
      {},
      ...series.map((s, i) => ({ label: s.label, stroke: colour(s, i), width: 2 })),
    ],
  };
  return mount(container, options, [times, ...series.map((s) => s.values)], null);
}

/**
 * Charts of several jobs at once (the compare view, the sweep page): per-epoch curves overlaid, one
 * colour per job, and the sweep's parallel coordinates. SVG only (no WebGL); Plotly is the global of
 * /static/vendor/plotly.min.js. Names and values from the API go in as Plotly data, never HTML.
 */
/* global Plotly */

const PLOT_CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["select2d", "lasso2d"] };
export const COLORS = ["#1f6feb", "#e8590c", "#2f9e44", "#ae3ec9", "#f08c00", "#0c8599", "#c2255c", "#5c940d"];
const DASHES = ["solid", "dash", "dot", "dashdot"];

function layout(xTitle, yTitle, extra = {}) {
  return {
    margin: { l: 60, r: 16, t: 8, b: 44 }, xaxis: { title: { text: xTitle }, zeroline: false, gridcolor: "#eef1f5", dtick: 1 },
    yaxis: { title: { text: yTitle }, zeroline: false, gridcolor: "#eef1f5" }, showlegend: true,
    legend: { orientation: "h", y: 1.15, x: 0 }, paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
    font: { family: "system-ui, sans-serif", size: 12, color: "#344054" }, ...extra,
  };
}

/**
 * The metrics the compare view overlays, per epoch row of GET /v1/jobs/{id}/metrics: key, chart
 * title, y axis; "layers" metrics are lists (one trace per layer and job).
 */
export const EPOCH_METRICS = [
  { key: "test_accuracy", title: "Test accuracy per epoch", y: "accuracy" },
  { key: "train_accuracy", title: "Train accuracy (online) per epoch", y: "accuracy" },
  { key: "loss", title: "Loss per epoch", y: "loss" },
  { key: "firing_rates", title: "Firing rate per layer", y: "spikes per neuron per step", layers: true },
  { key: "samples_per_sec", title: "Throughput", y: "samples / s" },
  { key: "activation_sparsity", title: "Activation sparsity (NeuroBench)", y: "sparsity" },
  { key: "synaptic_operations", title: "Synaptic operations per sample (NeuroBench)", y: "ACs / sample" },
  { key: "spikes_per_sample", title: "Spikes per sample per layer", y: "spikes / sample", layers: true },
];

/**
 * Draws metric (one of EPOCH_METRICS) of every run ({label, epochs: [rows]}) into element id:
 * one trace per run (per run and layer for list metrics: the layer as the dash style).
 */
export function plotEpochMetric(id, metric, runs) {
  const traces = [];
  runs.forEach((run, k) => {
    const rows = run.epochs.filter((row) => row[metric.key] !== undefined && row[metric.key] !== null);
    const color = COLORS[k % COLORS.length];
    if (metric.layers) {
      const width = Math.max(0, ...rows.map((row) => row[metric.key].length));
      for (let layer = 0; layer < width; layer++) {
        traces.push({ x: rows.map((row) => row.epoch), y: rows.map((row) => row[metric.key][layer]), type: "scatter",
          mode: "lines+markers", name: `${run.label} · ${layer === width - 1 ? "output" : `layer ${layer + 1}`}`,
          line: { color, width: 2, dash: DASHES[layer % DASHES.length] }, marker: { size: 5 } });
      }
    } else {
      traces.push({ x: rows.map((row) => row.epoch), y: rows.map((row) => row[metric.key]), type: "scatter",
        mode: "lines+markers", name: run.label, line: { color, width: 2 }, marker: { size: 6 } });
    }
  });
  const extra = metric.y === "accuracy" ? { yaxis: { title: { text: "accuracy" }, range: [0, 1.02], gridcolor: "#eef1f5" } } : {};
  Plotly.react(id, traces, layout("epoch", metric.y, extra), PLOT_CONFIG);
}

/**
 * The sweep's parallel coordinates: one axis per parameter (numbers as they are, other values as
 * categories) and the objective last; each trial one line coloured by its objective (trials
 * without one yet are left out), so the best trial is the brightest; its values are named in the
 * objective axis' label.
 */
/**
 * Parallel coordinates of a sweep's scored trials: one vertical axis per parameter and one for the
 * objective, each scaled to its own range (a choice's values evenly spaced), one line per trial,
 * coloured from low (light) to high (dark) objective, the best one thicker. Drawn with SVG scatter
 * traces, not plotly's parcoords: that one needs WebGL, which the dashboard's CSP (no
 * 'unsafe-eval') and headless browsers do not give. The axes drawn are kept in the element's
 * ``data-dimensions`` (JSON: label, min, max or ticktext) for tests and tools.
 */
export function plotParcoords(id, keys, rows, objective, best) {
  const scored = rows.filter((row) => row.objective !== null && row.objective !== undefined);
  const axes = keys.map((key) => {
    const values = scored.map((row) => row.params[key]);
    if (values.every((v) => typeof v === "number")) return { label: key, values };
    const names = [...new Set(values.map(String))];
    return { label: key, values: values.map((v) => names.indexOf(String(v))), ticktext: names };
  });
  axes.push({ label: best ? `${objective} (best ${best.objective.toFixed(4)})` : objective,
    values: scored.map((row) => row.objective) });
  for (const axis of axes) {
    axis.min = axis.ticktext ? 0 : Math.min(...axis.values);
    axis.max = axis.ticktext ? Math.max(axis.ticktext.length - 1, 1) : Math.max(...axis.values);
  }
  const scale = (axis, v) => (axis.max > axis.min ? (v - axis.min) / (axis.max - axis.min) : 0.5);
  const low = Math.min(...scored.map((r) => r.objective)), high = Math.max(...scored.map((r) => r.objective));
  const shade = (v) => {  // light blue (worst) to dark blue (best)
    const f = high > low ? (v - low) / (high - low) : 1;
    return `rgb(${Math.round(180 - 150 * f)}, ${Math.round(200 - 120 * f)}, ${Math.round(240 - 60 * f)})`;
  };
  const x = axes.map((_, i) => i);
  const traces = scored.map((row, k) => ({
    type: "scatter", mode: "lines+markers", x, y: axes.map((axis) => scale(axis, axis.values[k])),
    line: { color: shade(row.objective), width: best && row.id === best.job_id ? 4 : 2 },
    marker: { size: 6 }, name: row.name || row.id, showlegend: false,
    hovertemplate: axes.map((axis) => `${axis.label}: ${axis.ticktext ? axis.ticktext[axis.values[k]] : axis.values[k]}`)
      .join("<br>") + "<extra></extra>",
  }));
  const edge = (axis, v) => (axis.ticktext ? axis.ticktext[v] : Number(v).toPrecision(3));
  const annotations = axes.flatMap((axis, i) => [
    { x: i, y: 1.12, text: axis.label, showarrow: false, font: { size: 12 } },
    { x: i, y: 1.0, text: edge(axis, axis.max), showarrow: false, xanchor: "left", xshift: 4, font: { size: 10 } },
    { x: i, y: 0.0, text: edge(axis, axis.min), showarrow: false, xanchor: "left", xshift: 4, font: { size: 10 } },
  ]);
  const shapes = axes.map((_, i) => ({ type: "line", x0: i, x1: i, y0: 0, y1: 1, line: { color: "#98a2b3", width: 1 } }));
  const element = document.getElementById(id);
  element.dataset.dimensions = JSON.stringify(axes.map(({ label, min, max, ticktext }) => ({ label, min, max, ticktext })));
  Plotly.react(id, traces, {
    margin: { l: 40, r: 70, t: 56, b: 24 }, paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
    xaxis: { visible: false, range: [-0.2, axes.length - 0.6] }, yaxis: { visible: false, range: [-0.05, 1.2] },
    annotations, shapes, font: { family: "system-ui, sans-serif", size: 12, color: "#344054" },
  }, PLOT_CONFIG);
}

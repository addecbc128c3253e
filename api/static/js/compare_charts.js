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
export function plotParcoords(id, keys, rows, objective, best) {
  const scored = rows.filter((row) => row.objective !== null && row.objective !== undefined);
  const dimensions = keys.map((key) => {
    const values = scored.map((row) => row.params[key]);
    if (values.every((v) => typeof v === "number")) return { label: key, values };
    const names = [...new Set(values.map(String))];
    return { label: key, values: values.map((v) => names.indexOf(String(v))), tickvals: names.map((_, i) => i), ticktext: names };
  });
  dimensions.push({ label: best ? `${objective} (best ${best.objective.toFixed(4)})` : objective,
    values: scored.map((row) => row.objective), range: [Math.min(0, ...scored.map((r) => r.objective)), 1] });
  Plotly.react(id, [{
    type: "parcoords", dimensions,
    line: { color: scored.map((row) => row.objective), colorscale: "Viridis", showscale: true,
      colorbar: { title: { text: objective }, thickness: 12 } },
  }], { margin: { l: 70, r: 70, t: 48, b: 24 }, paper_bgcolor: "rgba(0,0,0,0)",
    font: { family: "system-ui, sans-serif", size: 12, color: "#344054" } }, PLOT_CONFIG);
}

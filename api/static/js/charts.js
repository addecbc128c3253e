/**
 * The job page's Plotly charts (SVG only: no WebGL, whose shaders the page's CSP would refuse).
 * Plotly is the global from /static/vendor/plotly.min.js, a classic deferred script that runs before
 * the modules. Chart data are Plotly data values, never HTML.
 */
/* global Plotly */

import { fmtPercent } from "./format.js";

const PLOT_CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["select2d", "lasso2d"] };
const COLORS = ["#1f6feb", "#e8590c", "#2f9e44", "#ae3ec9", "#f08c00", "#0c8599", "#c2255c", "#5c940d"];
const FLUSH_MS = 300;

/** The dashboard's layout for a chart with these axis titles; extra overrides its keys. */
function baseLayout(xTitle, yTitle, extra = {}) {
  return {
    margin: { l: 56, r: 16, t: 8, b: 44 }, xaxis: { title: { text: xTitle }, zeroline: false, gridcolor: "#eef1f5" },
    yaxis: { title: { text: yTitle }, zeroline: false, gridcolor: "#eef1f5" }, showlegend: true,
    legend: { orientation: "h", y: 1.12, x: 0 }, paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
    font: { family: "system-ui, sans-serif", size: 12, color: "#344054" }, ...extra,
  };
}

/** The note an empty chart shows in place of axes. */
export const NO_DATA = "no data yet";

/** layout as an empty chart's: no axes, "no data yet" in the middle (showData() brings the axes back). */
function emptyLayout(layout) {
  layout.xaxis = { ...layout.xaxis, visible: false };
  layout.yaxis = { ...layout.yaxis, visible: false };
  layout.showlegend = false;
  layout.annotations = [{ text: NO_DATA, showarrow: false, xref: "paper", yref: "paper", x: 0.5, y: 0.5,
    font: { size: 14, color: "#98a2b3" } }];
  return layout;
}

/**
 * An epoch axis's ticks: whole epochs only (1, 2, 3, never 1.5), every `dtick` epochs so that at most
 * about 8 ticks show up to epoch maxEpoch (1, 2, 5, 10, 20, 50, ...).
 */
export function epochTicks(maxEpoch) {
  let dtick = 1;
  for (let k = 0; maxEpoch / dtick > 8; k += 1) dtick = [2, 5, 10][k % 3] * 10 ** Math.floor(k / 3);
  return { tickmode: "linear", tick0: 0, dtick, tickformat: "d" };
}

/** An empty line trace. */
const line = (name, color, mode = "lines") => ({ x: [], y: [], name, mode, type: "scatter", line: { color, width: 2 }, marker: { size: 6 } });

/**
 * The live charts of one job (loss and throughput per step, accuracy and firing rate per layer per
 * epoch), in #chart-loss, #chart-speed, #chart-accuracy and #chart-firing. Points from progress()
 * and epoch() are buffered and drawn every FLUSH_MS by flush(); the global step of a progress event
 * is (epoch - 1) * steps + step. layers: the names of the firing-rate traces, one per layer.
 * A chart without points says "no data yet" instead of drawing empty axes; epoch axes tick whole
 * epochs only.
 */
export class JobCharts {
  constructor(layers) {
    this.pending = { loss: [[], []], speed: [[], []], accuracy: [[[], []], [[], []]], firing: layers.map(() => [[], []]) };
    this.layers = layers;
    this.empty = new Set(["chart-loss", "chart-accuracy", "chart-firing", "chart-speed"]);
    this.lastEpoch = { "chart-accuracy": 0, "chart-firing": 0 };  // the epoch axes' largest epoch so far
    const epochLayout = (yTitle, yaxis = {}) => {
      const layout = baseLayout("epoch", yTitle);
      layout.xaxis = { ...layout.xaxis, ...epochTicks(1) };
      layout.yaxis = { ...layout.yaxis, ...yaxis };
      return emptyLayout(layout);
    };
    Plotly.newPlot("chart-loss", [line("loss (running mean over the epoch)", COLORS[0])],
      emptyLayout(baseLayout("step", "loss")), PLOT_CONFIG);
    Plotly.newPlot("chart-accuracy", [line("train", COLORS[0], "lines+markers"), line("test", COLORS[1], "lines+markers")],
      epochLayout("accuracy", { range: [0, 1.02] }), PLOT_CONFIG);
    Plotly.newPlot("chart-firing", layers.map((name, k) => line(name, COLORS[k % COLORS.length], "lines+markers")),
      epochLayout("spikes per neuron per step"), PLOT_CONFIG);
    Plotly.newPlot("chart-speed", [line("samples/s", COLORS[2])], emptyLayout(baseLayout("step", "samples / s")), PLOT_CONFIG);
    this.timer = setInterval(() => this.flush(), FLUSH_MS);
  }

  /**
   * Chart id now has points: its axes and legend come back the first time, and an epoch axis
   * re-spaces its ticks when it reaches a new epoch (xs: the new points' x values).
   */
  showData(id, xs) {
    const update = {};
    if (this.empty.delete(id)) Object.assign(update, { "xaxis.visible": true, "yaxis.visible": true, showlegend: true, annotations: [] });
    if (id in this.lastEpoch && Math.max(...xs) > this.lastEpoch[id]) {
      this.lastEpoch[id] = Math.max(...xs);
      update["xaxis.dtick"] = epochTicks(this.lastEpoch[id]).dtick;
    }
    if (Object.keys(update).length) Plotly.relayout(id, update);
  }

  progress(data) {
    const step = (data.epoch - 1) * data.steps + data.step;
    this.pending.loss[0].push(step); this.pending.loss[1].push(data.loss);
    this.pending.speed[0].push(step); this.pending.speed[1].push(data.samples_per_sec);
  }

  epoch(data) {
    const acc = this.pending.accuracy;
    acc[0][0].push(data.epoch); acc[0][1].push(data.train_accuracy);
    acc[1][0].push(data.epoch); acc[1][1].push(data.test_accuracy);
    (data.firing_rates || []).forEach((rate, k) => {
      if (k < this.layers.length) { this.pending.firing[k][0].push(data.epoch); this.pending.firing[k][1].push(rate); }
    });
  }

  flush() {
    const extend = (id, series) => {
      if (!series.some(([xs]) => xs.length)) return;
      const x = series.map(([xs]) => xs.splice(0));
      Plotly.extendTraces(id, { x, y: series.map(([, ys]) => ys.splice(0)) }, series.map((_, k) => k));
      this.showData(id, x.flat());
    };
    extend("chart-loss", [this.pending.loss]);
    extend("chart-speed", [this.pending.speed]);
    extend("chart-accuracy", this.pending.accuracy);
    extend("chart-firing", this.pending.firing);
  }

  /**
   * The authors' logged runs (hm2bp_core.reference: {name: {epochs: [{epoch, train_accuracy,
   * test_accuracy}]}}), their first `epochs` epochs, as dashed traces on the accuracy chart after
   * the job's own two.
   */
  reference(runs, epochs) {
    const traces = [];
    Object.entries(runs).forEach(([name, run], k) => {
      const dash = k ? "dot" : "dash";
      const rows = run.epochs.filter((row) => row.epoch <= epochs);
      for (const [key, color] of [["train_accuracy", COLORS[0]], ["test_accuracy", COLORS[1]]]) {
        traces.push({
          x: rows.map((row) => row.epoch), y: rows.map((row) => row[key]), type: "scatter", mode: "lines",
          name: `authors ${name}: ${key === "train_accuracy" ? "train" : "test"}`, line: { color, width: 1.5, dash },
        });
      }
    });
    Plotly.addTraces("chart-accuracy", traces);
    this.showData("chart-accuracy", traces.flatMap((trace) => trace.x));
  }

  stop() { clearInterval(this.timer); this.flush(); }
}

/** The test set's confusion matrix (confusion.json: matrix[true][predicted]) as a heatmap, true class 0 on top. */
export function plotConfusion(id, confusion) {
  const labels = confusion.matrix.map((_, k) => String(k));
  const rows = [...confusion.matrix].reverse();
  Plotly.newPlot(id, [{
    type: "heatmap", z: rows, x: labels, y: [...labels].reverse(), showscale: false,
    colorscale: [[0, "#f5f9ff"], [0.15, "#cfe2ff"], [0.5, "#5b9bf0"], [1, "#0b3c8c"]],
    texttemplate: "%{z}", hovertemplate: "true %{y}, predicted %{x}: %{z}<extra></extra>",
  }], baseLayout("predicted class", "true class", {
    showlegend: false, margin: { l: 56, r: 16, t: 28, b: 44 }, xaxis: { title: { text: "predicted class" }, type: "category", side: "bottom" },
    yaxis: { title: { text: "true class" }, type: "category" },
    title: { text: `accuracy ${fmtPercent(confusion.accuracy)} on ${confusion.samples} test samples`, font: { size: 12 }, x: 0.02 },
  }), PLOT_CONFIG);
}

/**
 * One test sample's spike raster (a sample of rasters.json): one band per layer, top to bottom, each
 * its own y axis (neuron index), sharing the time axis [0, timeSteps] under the bottom band. The
 * output band's rows are its classes, labelled with classNames (one per output neuron).
 */
export function plotRaster(id, layers, timeSteps, classNames) {
  const gap = 0.04;
  const height = (1 - gap * (layers.length - 1)) / layers.length;
  const layout = baseLayout("time step", "", { showlegend: false, margin: { l: 96, r: 16, t: 8, b: 44 } });
  delete layout.yaxis;
  const traces = layers.map((layer, k) => {
    const axis = k === 0 ? "" : String(k + 1);
    const top = 1 - k * (height + gap);
    const output = k === layers.length - 1;
    layout[`yaxis${axis}`] = { domain: [top - height, top], title: { text: output ? `${layer.name}: class` : layer.name, font: { size: 11 } },
      range: [-0.5, layer.size - 0.5], zeroline: false, showgrid: false,
      ...(output ? { tickmode: "array", tickvals: classNames.map((_, c) => c), ticktext: classNames, tickfont: { size: 10 } } : {}) };
    return { type: "scatter", mode: "markers", x: layer.times, y: layer.neurons, yaxis: `y${axis}`,
      name: layer.name, marker: { symbol: "line-ns-open", size: layer.size > 200 ? 3 : 6, color: COLORS[k % COLORS.length] },
      hovertemplate: `${layer.name}: ${output ? "class" : "neuron"} %{y} at step %{x}<extra></extra>` };
  });
  layout.xaxis.range = [0, timeSteps];
  layout.xaxis.anchor = `y${layers.length > 1 ? layers.length : ""}`;
  Plotly.newPlot(id, traces, layout, PLOT_CONFIG);
}

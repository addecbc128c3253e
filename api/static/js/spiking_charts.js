/**
 * The job page's card of NeuroBench spiking metrics per epoch (hm2bp_core/spiking_metrics.py, of
 * each epoch's test-set evaluation): activation sparsity, synaptic operations per sample and spikes
 * per sample per layer. It adds itself to the page's chart grid and is fed the stream's epoch events.
 */

import { EPOCH_METRICS, plotEpochMetric } from "./compare_charts.js";
import { $, el } from "./dom.js";

const SHOWN = ["activation_sparsity", "synaptic_operations", "spikes_per_sample"];

export class SpikingCharts {
  constructor() {
    this.rows = [];
    this.metrics = EPOCH_METRICS.filter((metric) => SHOWN.includes(metric.key));
    this.card = el("div", { class: "card", id: "spiking-card", hidden: true },
      el("h2", { text: "Spiking metrics (NeuroBench, test set)" }),
      el("p", { class: "muted small", id: "spiking-latest" }),
      ...this.metrics.map((metric) => el("div", { class: "chart", id: `spiking-${metric.key}` })));
    const grid = $("#view .grid");
    if (grid) grid.append(this.card);
  }

  /** An epoch event: its spiking metrics, when it has them, join the charts. */
  epoch(data) {
    if (data.activation_sparsity === undefined || data.activation_sparsity === null) return;
    this.rows = [...this.rows.filter((row) => row.epoch !== data.epoch), data].sort((a, b) => a.epoch - b.epoch);
    this.card.hidden = false;
    $("#spiking-latest").textContent = `epoch ${data.epoch}: sparsity ${data.activation_sparsity.toFixed(4)}, `
      + `${Math.round(data.synaptic_operations).toLocaleString()} synaptic operations per sample, spikes per sample `
      + (data.spikes_per_sample || []).map((v) => v.toFixed(1)).join(" / ");
    for (const metric of this.metrics) plotEpochMetric(`spiking-${metric.key}`, metric, [{ label: "this job", epochs: this.rows }]);
  }
}

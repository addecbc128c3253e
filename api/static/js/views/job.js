/**
 * One job's page (#/jobs/ID): its record (dataset name, tags, key parameters, total and per-epoch
 * duration, CPU and memory while it runs), live charts and log from the job's stream, cancel (after
 * a confirmation, apart from the downloads), clone (the New job form filled with its dataset and
 * spec), resume of a cancelled or failed job (POST .../resume), the artifact downloads, and once it
 * has succeeded its confusion matrix and spike rasters.
 * window.hm2bpStream is the page's JobStream while it is shown (tests, and the console, drop it).
 */

import { api } from "../api.js";
import { JobCharts, plotConfusion, plotRaster } from "../charts.js";
import { $, el } from "../dom.js";
import { fmtDuration, fmtPercent, fmtTime, jobSeconds } from "../format.js";
import { TERMINAL, setBar, specSummary, stateBadge } from "../job_status.js";
import { SpikingCharts } from "../spiking_charts.js";
import { JobStream } from "../stream.js";
import { leave, mount, onLeave } from "../view.js";

const LOG_LINES = 300;
const POLL_MS = 3000;  // how often a job that has not ended is fetched afresh (its duration, CPU and memory)
const EPOCH_TIMES = 12;  // the per-epoch durations listed: the last ones
const RESUMABLE = new Set(["cancelled", "failed"]);
const STREAM_STATUS = { live: "live", reconnecting: "reconnecting…", ended: "stream ended" };

export function showJob(jobId) {
  mount("tpl-job");
  const page = new JobPage(jobId);
  onLeave(() => page.leave());
  page.load();
}

/** The names of the output layer's classes: the class indices, "0" to "N-1" (datasets carry no other names). */
function classNames(spec) {
  const layers = (spec && spec.network && spec.network.layers) || [];
  const units = layers.length ? layers[layers.length - 1].units : 0;
  return Array.from({ length: units || 0 }, (_, k) => String(k));
}

/** The firing-rate trace names of a spec's layers: "layer 1 (dense 100)", ..., "output (dense 10)". */
function layerNames(spec) {
  const layers = (spec && spec.network && spec.network.layers) || [];
  return layers.map((layer, k) => {
    const size = layer.type === "conv" ? `${layer.channels}@${layer.kernel}x${layer.kernel}`
      : layer.type === "pool" ? `${layer.size}x${layer.size}` : `${layer.units}`;
    return `${k === layers.length - 1 ? "output" : `layer ${k + 1}`} (${layer.type || "dense"} ${size})`;
  });
}

class JobPage {
  constructor(jobId) {
    this.jobId = jobId;
    this.url = `/v1/jobs/${encodeURIComponent(jobId)}`;
    this.alive = true;
    this.job = null;
    this.charts = null;
    this.stream = null;
    this.logLines = [];
    this.stats = {};  // test and best test accuracy from the stream's epoch events
    this.epochSeconds = new Map();  // epoch -> its seconds, from the stream's epoch events
    this.datasetName = null;
    this.streamStatus = $("#stream-status");
    $("#job-id").textContent = jobId;
    $("#clone").href = `#/submit?from=${encodeURIComponent(jobId)}`;
    $("#download-model").href = this.artifactUrl("model.safetensors");
    $("#download-nir").href = this.artifactUrl("model.nir");
    $("#download-metrics").href = this.artifactUrl("metrics.json");
    $("#cancel").addEventListener("click", () => this.askCancel(true));
    $("#cancel-no").addEventListener("click", () => this.askCancel(false));
    $("#cancel-yes").addEventListener("click", () => this.cancel());
    $("#resume").addEventListener("click", () => this.resume());
  }

  artifactUrl(name) { return `${this.url}/artifacts/${name}`; }

  /** Fetches the job, then draws it and follows its stream. */
  async load() {
    try {
      this.job = await api(this.url);
    } catch (error) {
      $("#job-name").textContent = error.status === 404 ? "Job not found" : `Could not load the job: ${error.message}`;
      return;
    }
    if (!this.alive) return;
    $("#job-spec").textContent = JSON.stringify(this.job.spec, null, 2);
    this.render();
    this.charts = new JobCharts(layerNames(this.job.spec));
    this.spiking = new SpikingCharts();
    this.showReference();
    this.showDatasetName();
    this.stream = new JobStream(this.jobId, (event) => this.onEvent(event), (state) => this.showStreamStatus(state));
    window.hm2bpStream = this.stream;
    this.poll();
  }

  /** While the job has not ended: fetches it afresh every POLL_MS (duration, CPU and memory, state). */
  poll() {
    this.pollTimer = setTimeout(async () => {
      if (!this.alive || TERMINAL.has(this.job.state)) return;
      try {
        const fresh = await api(this.url);
        if (!this.alive) return;
        if (!TERMINAL.has(fresh.state)) this.job = { ...fresh, progress: this.job.progress || fresh.progress };
        this.render();
      } catch (error) { /* the next poll tries again */ }
      this.poll();
    }, POLL_MS);
  }

  /** The dataset's name (GET /v1/datasets/ID) in the header, in place of its id. */
  async showDatasetName() {
    try {
      const dataset = await api(`/v1/datasets/${encodeURIComponent(this.job.dataset)}`);
      if (!this.alive) return;
      this.datasetName = dataset.name;
      this.render();
    } catch (error) { /* a deleted dataset: its id stays */ }
  }

  leave() {
    this.alive = false;
    clearTimeout(this.pollTimer);
    if (this.charts) this.charts.stop();
    if (this.stream) this.stream.close();
    window.hm2bpStream = null;
  }

  /** The header, progress bar, stats, error and buttons, from this.job (and this.stats). */
  render() {
    const { job, stats } = this;
    document.title = `${job.name} · hm2bp`;
    $("#job-name").textContent = job.name;
    stateBadge(job.state, $("#job-state"));
    const dataset = this.datasetName && this.datasetName !== job.dataset ? `${this.datasetName} (${job.dataset})` : job.dataset;
    $("#job-meta").replaceChildren(
      [`dataset ${dataset}`, specSummary(job.spec), `created ${fmtTime(job.created_at)}`,
        job.started_at ? `started ${fmtTime(job.started_at)}` : null, job.finished_at ? `finished ${fmtTime(job.finished_at)}` : null,
        job.attempts > 1 ? `attempt ${job.attempts}` : null].filter(Boolean).join(" · "),
      ...job.tags.map((tag) => el("span", { class: "tag", text: tag })));
    setBar($("#job-bar"), job);
    const p = job.progress || {};
    const m = job.metrics || {};
    const items = [
      ["epoch", p.epoch ? `${p.epoch} / ${p.epochs}` : "–"],
      ["loss", p.loss !== undefined && p.loss !== null ? p.loss.toFixed(3) : "–"],
      ["samples / s", p.samples_per_sec ? p.samples_per_sec.toFixed(1) : "–"],
      ["ETA", TERMINAL.has(job.state) ? "–" : fmtDuration(p.eta_seconds)],
      ["test accuracy", fmtPercent(stats.test ?? m.test_accuracy)],
      ["best test accuracy", fmtPercent(stats.best ?? m.best_test_accuracy)],
      ["duration", fmtDuration(jobSeconds(job))],
      ["per epoch", fmtDuration(this.meanEpochSeconds())],
    ];
    const resources = job.state === "running" && job.resources;
    if (resources) {
      items.push(["CPU", `${resources.cpu_percent.toFixed(0)} %`], ["memory", `${resources.rss_mib.toFixed(0)} MiB`]);
    }
    $("#job-stats").replaceChildren(...items.map(([name, value]) =>
      el("div", { class: "stat", "data-stat": name }, el("b", { text: value }), el("span", { text: name }))));
    const epochs = [...this.epochSeconds].slice(-EPOCH_TIMES);
    $("#epoch-times").textContent = epochs.length
      ? `Epoch durations${this.epochSeconds.size > EPOCH_TIMES ? ` (last ${EPOCH_TIMES})` : ""}: `
        + epochs.map(([epoch, seconds]) => `epoch ${epoch} ${fmtDuration(seconds)}`).join(" · ") : "";
    $("#job-error").textContent = job.error ? `${job.error.reason}: ${job.error.message}` : "";
    const cancellable = !TERMINAL.has(job.state) && job.state !== "cancelling";
    $("#cancel").disabled = !cancellable;
    if (!cancellable) this.askCancel(false);
    $("#resume").hidden = !RESUMABLE.has(job.state);
    for (const id of ["#download-model", "#download-nir", "#download-metrics"]) $(id).classList.toggle("disabled", job.state !== "succeeded");
  }

  /** Appends log lines, keeping the last LOG_LINES, and follows the bottom if the reader was there. */
  appendLog(message) {
    for (const text of String(message).split("\n")) if (text) this.logLines.push(text);
    this.logLines.splice(0, Math.max(0, this.logLines.length - LOG_LINES));
    const pre = $("#job-log");
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
    pre.textContent = this.logLines.join("\n");
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  }

  /**
   * One stream event: progress and epoch events feed the charts, log events the log; on a terminal
   * state the job's record is fetched afresh.
   */
  onEvent(event) {
    const data = event.data;
    if (event.type === "progress") {
      this.charts.progress(data);
      this.job.progress = data;
    } else if (event.type === "epoch") {
      this.charts.epoch(data);
      this.spiking.epoch(data);
      this.stats.test = data.test_accuracy;
      this.stats.best = Math.max(this.stats.best ?? 0, data.test_accuracy ?? 0);
      if (data.seconds !== undefined) this.epochSeconds.set(data.epoch, data.seconds);
    } else if (event.type === "log") {
      this.appendLog(data.message);
    } else if (event.type === "state") {
      this.job.state = data.state;
      this.appendLog(`[${fmtTime(event.at)}] state ${data.state}${data.reason ? `: ${data.reason}` : ""}`);
      if (TERMINAL.has(data.state)) {
        this.charts.flush();
        api(this.url).then((fresh) => { if (this.alive) { this.job = fresh; this.render(); this.finished(); } });
      }
    }
    this.render();
  }

  /**
   * When the job trains a model of the paper's (GET .../metrics names its row), the authors' logged
   * curves go on the accuracy chart beside the job's own, and the card says which run they are.
   */
  async showReference() {
    let metrics;
    try {
      metrics = await api(`${this.url}/metrics`);
    } catch (error) { return; }  // the chart works without it
    if (!this.alive || !metrics.reference) return;
    const epochs = Math.max((this.job.spec.training || {}).epochs || 0, 5);  // the job's span, or a trend
    this.charts.reference(metrics.reference.runs, epochs);
    const runs = metrics.reference.runs;
    const files = [...new Set(Object.values(runs).map((run) => run.file.split("/").pop()))];
    const note = $("#accuracy-reference");
    note.textContent = `Dashed: the authors' logged runs of this model (paper row ${metrics.reference.row}: `
      + `${Object.keys(runs).join(", ")}; ${files.join(", ")} in their repository), first ${epochs} epochs.`;
    note.hidden = false;
  }

  /** A succeeded job's confusion matrix and spike rasters, where it has them. */
  async finished() {
    if (this.job.state !== "succeeded") return;
    try {
      showConfusion(await api(this.artifactUrl("confusion.json")));
    } catch (error) { /* older jobs have none */ }
    try {
      showRasters(await api(this.artifactUrl("rasters.json")), classNames(this.job.spec));
    } catch (error) { /* disabled by HM2BP_RASTER_SAMPLES=0, or an older job */ }
  }

  /** The mean of the per-epoch durations seen so far (null before the first epoch ends). */
  meanEpochSeconds() {
    const seconds = [...this.epochSeconds.values()];
    return seconds.length ? seconds.reduce((a, b) => a + b, 0) / seconds.length : null;
  }

  /** Shows (ask true) or hides the cancel confirmation in place of the Cancel button. */
  askCancel(ask) {
    $("#cancel-confirm").hidden = !ask;
    $("#cancel").hidden = ask;
  }

  async cancel() {
    this.askCancel(false);
    $("#cancel").disabled = true;
    try {
      this.job = await api(`${this.url}/cancel`, { method: "POST" });
      this.render();
    } catch (error) {
      $("#job-error").textContent = `Cancel failed: ${error.message}`;
      $("#cancel").disabled = false;
    }
  }

  /** POST .../resume (a cancelled or failed job is queued again, same id), then shows the job afresh. */
  async resume() {
    $("#resume").disabled = true;
    try {
      await api(`${this.url}/resume`, { method: "POST" });
      leave();
      showJob(this.jobId);
    } catch (error) {
      $("#job-error").textContent = error.status === 404 || error.status === 405
        ? "Resume failed: this service has no resume (POST /v1/jobs/ID/resume)" : `Resume failed: ${error.message}`;
      $("#resume").disabled = false;
    }
  }

  /** The stream's state beside the buttons; data-reconnects counts the reconnections so far. */
  showStreamStatus(state) {
    const status = this.streamStatus;
    status.className = `stream ${state}`;
    status.textContent = STREAM_STATUS[state];
    status.dataset.reconnects = String(this.stream ? this.stream.reconnects : 0);
  }
}

function showConfusion(confusion) {
  $("#confusion-card").hidden = false;
  plotConfusion("chart-confusion", confusion);
}

/** The raster card: a choice of test sample, and the chosen sample's raster (output rows labelled with classes). */
function showRasters(rasters, classes) {
  if (!rasters.samples.length) return;
  $("#raster-card").hidden = false;
  const select = $("#raster-sample");
  select.replaceChildren(...rasters.samples.map((sample, k) => el("option", { value: String(k), text: sampleLabel(sample) })));
  const draw = () => plotRaster("chart-raster", rasters.samples[Number(select.value)].layers, rasters.time_steps, classes);
  select.addEventListener("change", draw);
  draw();
}

function sampleLabel(sample) {
  const outcome = sample.output_counts.some((c) => c > 0) ? `predicted ${sample.prediction}` : "no output spikes";
  return `test sample #${sample.index}: label ${sample.label}, ${outcome}`;
}

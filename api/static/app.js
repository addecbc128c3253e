/* hm2bp dashboard: plain JavaScript, no build step, no CDN.
 *
 * Views are chosen by the URL fragment: #/signin, #/jobs, #/jobs/ID, #/submit.
 * Rule for everything that comes from the API (job, dataset and layer names, log lines, errors):
 * it is put into the page with textContent or as a Plotly data value, never as HTML.
 *
 * Auth: the API token lives in sessionStorage (this tab only) and goes out as a bearer header on
 * REST calls. POST /v1/session turns it into an HttpOnly SameSite=Strict cookie, which the
 * websocket stream and plain download links use (the API checks their Origin).
 */
"use strict";

const TOKEN_KEY = "hm2bp.token";
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const POLL_MS = 2000;
const LOG_LINES = 300;
const view = document.getElementById("view");
let teardown = [];  // callbacks that stop the current view's timers and sockets

/* ------------------------------------------------------------------ helpers */

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function mount(templateId) {
  view.replaceChildren(document.getElementById(templateId).content.cloneNode(true));
}

const $ = (selector, root = document) => root.querySelector(selector);

function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "–";
  seconds = Math.max(0, Math.round(seconds));
  const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
  if (h) return `${h}h ${String(m).padStart(2, "0")}m`;
  if (m) return `${m}m ${String(s).padStart(2, "0")}s`;
  return `${s}s`;
}

function fmtTime(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  const today = new Date();
  const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  if (date.toDateString() === today.toDateString()) return time;
  return `${date.toLocaleDateString([], { month: "short", day: "numeric" })} ${time}`;
}

const fmtPercent = (value) => (value === null || value === undefined ? "–" : `${(100 * value).toFixed(2)} %`);

function stateBadge(state, node = el("span")) {
  node.className = `badge ${state}`;
  node.textContent = state;
  return node;
}

/** Fraction done, and its label, from a job record's latest progress event. */
function progressOf(job) {
  const p = job.progress;
  if (job.state === "succeeded") return { fraction: 1, label: p ? `${p.epochs} epochs` : "done" };
  if (!p) return { fraction: 0, label: job.state === "queued" ? "waiting for a worker" : "–" };
  const fraction = ((p.epoch - 1) + p.step / p.steps) / p.epochs;
  let label = `epoch ${p.epoch}/${p.epochs} · step ${p.step}/${p.steps}`;
  if (!TERMINAL.has(job.state) && p.eta_seconds !== null && p.eta_seconds !== undefined) label += ` · ETA ${fmtDuration(p.eta_seconds)}`;
  return { fraction: Math.min(1, Math.max(0, fraction)), label };
}

function setBar(barInner, job) {
  const { fraction, label } = progressOf(job);
  barInner.style.width = `${(100 * fraction).toFixed(1)}%`;
  barInner.parentElement.classList.toggle("done", job.state === "succeeded");
  barInner.parentElement.classList.toggle("failed", job.state === "failed");
  return label;
}

/* --------------------------------------------------------------------- API */

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.detail) || `HTTP ${status}`);
    this.status = status;
    this.errors = (body && body.errors) || [];
  }
}

const token = () => sessionStorage.getItem(TOKEN_KEY);

async function api(path, { method = "GET", json, body, headers = {} } = {}) {
  const init = { method, headers: { ...headers }, credentials: "same-origin" };
  if (token()) init.headers.Authorization = `Bearer ${token()}`;
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (body !== undefined) init.body = body;
  const response = await fetch(path, init);
  if (response.status === 401 && path !== "/v1/session") {
    signOut("Your token was refused (revoked or invalid). Sign in again.");
    throw new ApiError(401, { detail: "signed out" });
  }
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { detail: text }; }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

async function startSession(candidate) {
  const response = await fetch("/v1/session", {
    method: "POST", credentials: "same-origin", headers: { Authorization: `Bearer ${candidate}` },
  });
  if (!response.ok) return null;
  return (await response.json()).user;
}

let signOutNotice = "";
function signOut(notice = "") {
  sessionStorage.removeItem(TOKEN_KEY);
  signOutNotice = notice;
  fetch("/v1/session", { method: "DELETE", credentials: "same-origin" }).catch(() => {});
  location.hash = "#/signin";
  if (location.hash === "#/signin") route();
}

/* ------------------------------------------------------------------ router */

let sessionChecked = false;

async function route() {
  teardown.forEach((stop) => stop());
  teardown = [];
  const hash = location.hash || "#/jobs";
  const signedIn = Boolean(token());
  $("#nav").hidden = $("#account").hidden = !signedIn;
  if (!signedIn && hash !== "#/signin") { location.hash = "#/signin"; return; }
  if (signedIn && !sessionChecked) {  // a reload: refresh the cookie from the tab's token
    const user = await startSession(token());
    if (!user) { signOut("Your token was refused (revoked or invalid). Sign in again."); return; }
    $("#whoami").textContent = user;
    sessionChecked = true;
  }
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("active", hash.startsWith(`#/${link.dataset.nav}`) && !(link.dataset.nav === "jobs" && hash.length > 7));
  }
  const jobMatch = hash.match(/^#\/jobs\/([A-Za-z0-9_-]{1,64})$/);
  if (hash === "#/signin") showSignIn();
  else if (jobMatch) showJob(jobMatch[1]);
  else if (hash === "#/submit") showSubmit();
  else showJobs();
}

window.addEventListener("hashchange", route);
document.addEventListener("DOMContentLoaded", () => {
  $("#signout").addEventListener("click", () => signOut());
  route();
});

/* ----------------------------------------------------------------- sign in */

function showSignIn() {
  mount("tpl-signin");
  document.title = "Sign in · hm2bp";
  $("#signin-error").textContent = signOutNotice;
  $("#token").focus();
  $("#signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const candidate = $("#token").value.trim();
    const user = await startSession(candidate).catch(() => null);
    if (!user) {
      $("#signin-error").textContent = "This token was not accepted.";
      $("#token").classList.add("invalid");
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, candidate);
    sessionChecked = true;
    signOutNotice = "";
    $("#whoami").textContent = user;
    location.hash = "#/jobs";
  });
}

/* ---------------------------------------------------------------- job list */

function showJobs() {
  mount("tpl-jobs");
  document.title = "Jobs · hm2bp";
  const filter = $("#state-filter");
  filter.value = sessionStorage.getItem("hm2bp.filter") || "";
  const tbody = $("#jobs-table tbody");
  let timer = null;
  let alive = true;

  async function refresh() {
    const state = filter.value;
    const query = new URLSearchParams({ limit: "200" });
    if (state) query.set("state", state);
    try {
      const page = await api(`/v1/jobs?${query}`);
      if (!alive) return;
      tbody.replaceChildren(...page.items.map(jobRow));
      $("#jobs-empty").hidden = page.items.length > 0;
      $("#jobs-footer").textContent =
        `${page.items.length} of ${page.total} job${page.total === 1 ? "" : "s"} · updated ${fmtTime(new Date().toISOString())}`;
    } catch (error) {
      if (alive) $("#jobs-footer").textContent = `Could not load jobs: ${error.message}`;
    }
    if (alive) timer = setTimeout(refresh, POLL_MS);
  }

  filter.addEventListener("change", () => {
    sessionStorage.setItem("hm2bp.filter", filter.value);
    clearTimeout(timer);
    refresh();
  });
  teardown.push(() => { alive = false; clearTimeout(timer); });
  refresh();
}

function jobRow(job) {
  const inner = el("div");
  const bar = el("div", { class: "bar" }, inner);
  const label = setBar(inner, job);
  const best = job.metrics && job.metrics.best_test_accuracy;
  return el("tr", { "data-job": job.id },
    el("td", { class: "name" }, el("a", { href: `#/jobs/${job.id}`, text: job.name }), el("span", { class: "mono", text: job.id })),
    el("td", {}, stateBadge(job.state)),
    el("td", { text: job.dataset }),
    el("td", {}, bar, el("div", { class: "bar-label", text: label })),
    el("td", { class: "num", text: fmtPercent(best) }),
    el("td", { class: "time", text: fmtTime(job.created_at), title: job.created_at }),
    el("td", { class: "time", text: fmtTime(job.finished_at), title: job.finished_at || "" }),
  );
}

/* ----------------------------------------------------------------- job page */

const PLOT_CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["select2d", "lasso2d"] };
const COLORS = ["#1f6feb", "#e8590c", "#2f9e44", "#ae3ec9", "#f08c00", "#0c8599", "#c2255c", "#5c940d"];

function baseLayout(xTitle, yTitle, extra = {}) {
  return {
    margin: { l: 56, r: 16, t: 8, b: 44 }, xaxis: { title: { text: xTitle }, zeroline: false, gridcolor: "#eef1f5" },
    yaxis: { title: { text: yTitle }, zeroline: false, gridcolor: "#eef1f5" }, showlegend: true,
    legend: { orientation: "h", y: 1.12, x: 0 }, paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
    font: { family: "system-ui, sans-serif", size: 12, color: "#344054" }, ...extra,
  };
}

const line = (name, color, mode = "lines") => ({ x: [], y: [], name, mode, type: "scatter", line: { color, width: 2 }, marker: { size: 6 } });

/** Live charts of one job. Points arrive from the stream; each event id is applied at most once. */
class JobCharts {
  constructor(layers) {
    this.pending = { loss: [[], []], speed: [[], []], accuracy: [[[], []], [[], []]], firing: layers.map(() => [[], []]) };
    this.layers = layers;
    Plotly.newPlot("chart-loss", [line("loss (running mean over the epoch)", COLORS[0])],
      baseLayout("step", "loss"), PLOT_CONFIG);
    Plotly.newPlot("chart-accuracy", [line("train", COLORS[0], "lines+markers"), line("test", COLORS[1], "lines+markers")],
      baseLayout("epoch", "accuracy", { yaxis: { title: { text: "accuracy" }, range: [0, 1.02], gridcolor: "#eef1f5" } }), PLOT_CONFIG);
    Plotly.newPlot("chart-firing", layers.map((name, k) => line(name, COLORS[k % COLORS.length], "lines+markers")),
      baseLayout("epoch", "spikes per neuron per step"), PLOT_CONFIG);
    Plotly.newPlot("chart-speed", [line("samples/s", COLORS[2])], baseLayout("step", "samples / s"), PLOT_CONFIG);
    this.timer = setInterval(() => this.flush(), 300);
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
      Plotly.extendTraces(id, { x: series.map(([xs]) => xs.splice(0)), y: series.map(([, ys]) => ys.splice(0)) },
        series.map((_, k) => k));
    };
    extend("chart-loss", [this.pending.loss]);
    extend("chart-speed", [this.pending.speed]);
    extend("chart-accuracy", this.pending.accuracy);
    extend("chart-firing", this.pending.firing);
  }

  stop() { clearInterval(this.timer); this.flush(); }
}

function layerNames(spec) {
  const layers = (spec && spec.network && spec.network.layers) || [];
  return layers.map((layer, k) => {
    const size = layer.type === "conv" ? `${layer.channels}@${layer.kernel}x${layer.kernel}`
      : layer.type === "pool" ? `${layer.size}x${layer.size}` : `${layer.units}`;
    return `${k === layers.length - 1 ? "output" : `layer ${k + 1}`} (${layer.type || "dense"} ${size})`;
  });
}

/**
 * The job's websocket stream with resume: after a dropped connection it reconnects with
 * ?after=<last event id>, and ignores any event it has already applied, so no point is drawn twice.
 */
class JobStream {
  constructor(jobId, onEvent, onStatus) {
    Object.assign(this, { jobId, onEvent, onStatus, lastId: 0, ended: false, closed: false, retries: 0, reconnects: 0 });
    this.connect();
  }

  connect() {
    if (this.closed) return;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/v1/jobs/${encodeURIComponent(this.jobId)}/stream?after=${this.lastId}`);
    this.socket = socket;
    socket.onopen = () => { this.retries = 0; this.onStatus("live"); };
    socket.onmessage = (message) => {
      const event = JSON.parse(message.data);
      if (event.id <= this.lastId) return;  // already applied (a replay after reconnecting)
      this.lastId = event.id;
      if (event.type === "state" && TERMINAL.has(event.data.state)) this.ended = true;
      this.onEvent(event);
    };
    socket.onclose = () => {
      if (this.socket !== socket || this.closed) return;
      if (this.ended) { this.onStatus("ended"); return; }
      const delay = Math.min(10000, 500 * 2 ** this.retries++);
      this.reconnects += 1;
      this.onStatus("reconnecting");
      this.timer = setTimeout(() => this.connect(), delay);
    };
  }

  /** Drops the connection as a network failure would (for tests and the curious). */
  drop() { if (this.socket) this.socket.close(4000, "dropped"); }

  close() { this.closed = true; clearTimeout(this.timer); if (this.socket) this.socket.close(1000); }
}

function showJob(jobId) {
  mount("tpl-job");
  let alive = true;
  let charts = null;
  let stream = null;
  let job = null;
  const logLines = [];
  const stats = {};
  teardown.push(() => { alive = false; if (charts) charts.stop(); if (stream) stream.close(); window.hm2bpStream = null; });

  const artifactUrl = (name) => `/v1/jobs/${encodeURIComponent(jobId)}/artifacts/${name}`;
  $("#job-id").textContent = jobId;
  $("#download-model").href = artifactUrl("model.safetensors");
  $("#download-metrics").href = artifactUrl("metrics.json");

  function render() {
    document.title = `${job.name} · hm2bp`;
    $("#job-name").textContent = job.name;
    stateBadge(job.state, $("#job-state"));
    $("#job-meta").textContent = [`dataset ${job.dataset}`, `created ${fmtTime(job.created_at)}`,
      job.started_at ? `started ${fmtTime(job.started_at)}` : null, job.finished_at ? `finished ${fmtTime(job.finished_at)}` : null,
      job.attempts > 1 ? `attempt ${job.attempts}` : null].filter(Boolean).join(" · ");
    const label = setBar($("#job-bar"), job);
    const p = job.progress || {};
    const m = job.metrics || {};
    const items = [
      ["progress", label],
      ["epoch", p.epoch ? `${p.epoch} / ${p.epochs}` : "–"],
      ["loss", p.loss !== undefined && p.loss !== null ? p.loss.toFixed(3) : "–"],
      ["samples / s", p.samples_per_sec ? p.samples_per_sec.toFixed(1) : "–"],
      ["ETA", TERMINAL.has(job.state) ? "–" : fmtDuration(p.eta_seconds)],
      ["test accuracy", fmtPercent(stats.test ?? m.test_accuracy)],
      ["best test accuracy", fmtPercent(stats.best ?? m.best_test_accuracy)],
    ];
    $("#job-stats").replaceChildren(...items.slice(1).map(([name, value]) => el("div", { class: "stat" }, el("b", { text: value }), el("span", { text: name }))));
    $("#job-error").textContent = job.error ? `${job.error.reason}: ${job.error.message}` : "";
    const done = job.state === "succeeded";
    $("#cancel").disabled = TERMINAL.has(job.state) || job.state === "cancelling";
    for (const id of ["#download-model", "#download-metrics"]) $(id).classList.toggle("disabled", !done);
  }

  function appendLog(message) {
    for (const text of String(message).split("\n")) if (text) logLines.push(text);
    logLines.splice(0, Math.max(0, logLines.length - LOG_LINES));
    const pre = $("#job-log");
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
    pre.textContent = logLines.join("\n");
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  }

  function onEvent(event) {
    const data = event.data;
    if (event.type === "progress") {
      charts.progress(data);
      job.progress = data;
    } else if (event.type === "epoch") {
      charts.epoch(data);
      stats.test = data.test_accuracy;
      stats.best = Math.max(stats.best ?? 0, data.test_accuracy ?? 0);
    } else if (event.type === "log") {
      appendLog(data.message);
    } else if (event.type === "state") {
      job.state = data.state;
      appendLog(`[${fmtTime(event.at)}] state ${data.state}${data.reason ? `: ${data.reason}` : ""}`);
      if (TERMINAL.has(data.state)) {
        charts.flush();
        api(`/v1/jobs/${encodeURIComponent(jobId)}`).then((fresh) => { if (alive) { job = fresh; render(); finished(); } });
      }
    }
    render();
  }

  async function finished() {
    if (job.state !== "succeeded") return;
    try {
      showConfusion(await api(artifactUrl("confusion.json")));
    } catch (error) { /* older jobs have none */ }
    try {
      showRasters(await api(artifactUrl("rasters.json")));
    } catch (error) { /* disabled by HM2BP_RASTER_SAMPLES=0, or an older job */ }
  }

  $("#cancel").addEventListener("click", async () => {
    $("#cancel").disabled = true;
    try {
      job = await api(`/v1/jobs/${encodeURIComponent(jobId)}/cancel`, { method: "POST" });
      render();
    } catch (error) {
      $("#job-error").textContent = `Cancel failed: ${error.message}`;
      $("#cancel").disabled = false;
    }
  });

  (async () => {
    try {
      job = await api(`/v1/jobs/${encodeURIComponent(jobId)}`);
    } catch (error) {
      $("#job-name").textContent = error.status === 404 ? "Job not found" : `Could not load the job: ${error.message}`;
      return;
    }
    if (!alive) return;
    $("#job-spec").textContent = JSON.stringify(job.spec, null, 2);
    render();
    charts = new JobCharts(layerNames(job.spec));
    const status = $("#stream-status");
    stream = new JobStream(jobId, onEvent, (state) => {
      status.className = `stream ${state}`;
      status.textContent = { live: "live", reconnecting: "reconnecting…", ended: "stream ended" }[state];
      status.dataset.reconnects = String(stream ? stream.reconnects : 0);
    });
    window.hm2bpStream = stream;  // lets tests (and you, from the console) drop the connection
  })();
}

function showConfusion(confusion) {
  $("#confusion-card").hidden = false;
  const labels = confusion.matrix.map((_, k) => String(k));
  const rows = [...confusion.matrix].reverse();  // true class 0 on top
  Plotly.newPlot("chart-confusion", [{
    type: "heatmap", z: rows, x: labels, y: [...labels].reverse(), showscale: false,
    colorscale: [[0, "#f5f9ff"], [0.15, "#cfe2ff"], [0.5, "#5b9bf0"], [1, "#0b3c8c"]],
    texttemplate: "%{z}", hovertemplate: "true %{y}, predicted %{x}: %{z}<extra></extra>",
  }], baseLayout("predicted class", "true class", {
    showlegend: false, margin: { l: 56, r: 16, t: 28, b: 44 }, xaxis: { title: { text: "predicted class" }, type: "category", side: "bottom" },
    yaxis: { title: { text: "true class" }, type: "category" },
    title: { text: `accuracy ${fmtPercent(confusion.accuracy)} on ${confusion.samples} test samples`, font: { size: 12 }, x: 0.02 },
  }), PLOT_CONFIG);
}

function showRasters(rasters) {
  if (!rasters.samples.length) return;
  $("#raster-card").hidden = false;
  const select = $("#raster-sample");
  select.replaceChildren(...rasters.samples.map((sample, k) =>
    el("option", { value: String(k), text: `test sample #${sample.index}: label ${sample.label}, `
      + (sample.output_counts.some((c) => c > 0) ? `predicted ${sample.prediction}` : "no output spikes") })));
  const draw = () => {
    const sample = rasters.samples[Number(select.value)];
    const layers = sample.layers;
    const gap = 0.04;
    const height = (1 - gap * (layers.length - 1)) / layers.length;
    const layout = baseLayout("time step", "", { showlegend: false, margin: { l: 96, r: 16, t: 8, b: 44 } });
    delete layout.yaxis;
    const traces = layers.map((layer, k) => {
      const axis = k === 0 ? "" : String(k + 1);
      const top = 1 - k * (height + gap);
      layout[`yaxis${axis}`] = { domain: [top - height, top], title: { text: layer.name, font: { size: 11 } },
        range: [-0.5, layer.size - 0.5], zeroline: false, showgrid: false };
      return { type: "scatter", mode: "markers", x: layer.times, y: layer.neurons, yaxis: `y${axis}`,
        name: layer.name, marker: { symbol: "line-ns-open", size: layer.size > 200 ? 3 : 6, color: COLORS[k % COLORS.length] },
        hovertemplate: `${layer.name}: neuron %{y} at step %{x}<extra></extra>` };
    });
    layout.xaxis.range = [0, rasters.time_steps];
    layout.xaxis.anchor = `y${layers.length > 1 ? layers.length : ""}`;  // the time axis under the bottom layer
    Plotly.newPlot("chart-raster", traces, layout, PLOT_CONFIG);
  };
  select.addEventListener("change", draw);
  draw();
}

/* -------------------------------------------------------------- submit page */

/** A form over the spec, built from its defaults and JSON schema; errors from the API appear beside fields. */
function showSubmit() {
  mount("tpl-submit");
  document.title = "New job · hm2bp";
  let schema = null;
  let defaults = null;
  let model = null;
  let jsonMode = false;
  let alive = true;
  teardown.push(() => { alive = false; });

  const resolve = (node) => {
    while (node && node.$ref) node = schema.$defs[node.$ref.split("/").pop()];
    return node || {};
  };
  const propertiesOf = (node) => resolve(node).properties || {};
  /** The schema of a layer: the anyOf/oneOf member whose ``type`` const matches. */
  const layerSchema = (layer) => {
    const items = resolve(resolve(propertiesOf(schema.properties.network).layers).items);
    const options = items.anyOf || items.oneOf || [items];
    return resolve(options.map(resolve).find((o) => o.properties && o.properties.type && o.properties.type.const === (layer.type || "dense")) || options[0]);
  };
  const LEGENDS = { hm2bp: "HM2-BP switches", network: "network" };
  const LAYER_TEMPLATES = {
    dense: { type: "dense", units: 100, threshold: 10.0, init_range: 1.0 },
    conv: { type: "conv", channels: 12, kernel: 5, stride: 1, padding: 0, threshold: 10.0, init_range: 0.5 },
    pool: { type: "pool", size: 2, threshold: 0.75 },
  };

  function fieldKind(node, value) {
    node = resolve(node);
    const options = node.anyOf || [];
    const enumValues = node.enum || (options.find((o) => o.enum) || {}).enum;
    if (enumValues) return { kind: "enum", values: enumValues };
    const types = new Set([node.type, ...options.map((o) => o.type)].filter(Boolean));
    if (types.has("boolean") || typeof value === "boolean") return { kind: "boolean" };
    if (types.has("array") || Array.isArray(value)) return { kind: "json", nullable: types.has("null") };
    if (types.has("integer") || types.has("number") || typeof value === "number") {
      return { kind: "number", integer: types.has("integer") && !types.has("number"), nullable: types.has("null") };
    }
    return { kind: "text", nullable: types.has("null") };
  }

  function input(path, node, value, set) {
    const { kind, values, integer, nullable } = fieldKind(node, value);
    const id = `f-${path.replace(/[^a-z0-9]+/gi, "-")}`;
    let control;
    if (kind === "boolean") {
      control = el("input", { type: "checkbox", id });
      control.checked = Boolean(value);
      control.addEventListener("change", () => set(control.checked));
    } else if (kind === "enum") {
      control = el("select", { id }, ...values.map((v) => el("option", { value: String(v), text: String(v) })));
      control.value = String(value);
      control.addEventListener("change", () => set(control.value));
    } else {
      control = el("input", { type: kind === "number" ? "number" : "text", id, step: integer ? "1" : "any",
        placeholder: nullable ? "none" : "" });
      control.value = value === null || value === undefined ? "" : (kind === "json" ? JSON.stringify(value) : String(value));
      control.addEventListener("input", () => {
        const raw = control.value.trim();
        if (raw === "" && nullable) return set(null);
        if (kind === "number") return set(raw === "" ? raw : Number(raw));
        if (kind === "json") { try { return set(JSON.parse(raw)); } catch { return set(raw); } }
        return set(raw);
      });
    }
    control.dataset.field = `spec.${path}`;
    const resolved = resolve(node);
    const help = [resolved.description, bounds(resolved)].filter(Boolean).join(" · ");
    return el("div", { class: "row", title: help },
      el("label", { for: id, text: path.split(".").pop().replace(/\[\d+\]$/, "").replace(/_/g, " ") }),
      control, el("p", { class: "field-error", "data-error-for": `spec.${path}` }));
  }

  function bounds(node) {
    const parts = [];
    if (node.minimum !== undefined) parts.push(`≥ ${node.minimum}`);
    if (node.exclusiveMinimum !== undefined) parts.push(`> ${node.exclusiveMinimum}`);
    if (node.maximum !== undefined) parts.push(`≤ ${node.maximum}`);
    return parts.join(", ");
  }

  function section(object, node, path, setIn) {
    const fields = [];
    const properties = propertiesOf(node);
    for (const [key, value] of Object.entries(object)) {
      const childPath = path ? `${path}.${key}` : key;
      const childNode = properties[key] || {};
      const setter = (v) => { object[key] = v; };
      if (key === "layers" && Array.isArray(value)) fields.push(layersEditor(value, childPath));
      else if (value && typeof value === "object" && !Array.isArray(value)) {
        fields.push(el("fieldset", { class: key === "network" ? "wide" : null },
          el("legend", { text: LEGENDS[key] || key.replace(/_/g, " ") }), ...section(value, childNode, childPath, setter)));
      } else fields.push(input(childPath, childNode, value, setter));
    }
    return fields;
  }

  function layersEditor(layers, path) {
    const box = el("div", { class: "layers" });
    const redraw = () => box.replaceChildren(...layers.map((layer, k) => {
      const typeSelect = el("select", { "aria-label": `layer ${k + 1} type`, "data-field": `spec.${path}[${k}].type` },
        ...Object.keys(LAYER_TEMPLATES).map((t) => el("option", { value: t, text: t })));
      typeSelect.value = layer.type || "dense";
      typeSelect.addEventListener("change", () => { layers[k] = { ...LAYER_TEMPLATES[typeSelect.value] }; redraw(); });
      const remove = el("button", { type: "button", class: "button ghost", text: "remove", title: "remove this layer",
        onclick: () => { layers.splice(k, 1); redraw(); } });
      if (layers.length === 1) remove.disabled = true;
      const node = layerSchema(layer);
      const rows = Object.entries(layer).filter(([key]) => key !== "type")
        .map(([key, value]) => input(`${path}[${k}].${key}`, (node.properties || {})[key] || {}, value, (v) => { layer[key] = v; }));
      return el("fieldset", {},
        el("legend", { text: k === layers.length - 1 ? `layer ${k + 1} (output)` : `layer ${k + 1}` }),
        el("div", { class: "layer-head" }, typeSelect, remove), ...rows,
        el("p", { class: "field-error", "data-error-for": `spec.${path}[${k}]` }));
    }));
    redraw();
    const add = el("button", { type: "button", class: "button", text: "+ hidden layer",
      onclick: () => { layers.splice(Math.max(0, layers.length - 1), 0, { ...LAYER_TEMPLATES.dense }); redraw(); } });
    return el("fieldset", { class: "wide" }, el("legend", { text: "network layers" }), box,
      el("div", { class: "tools", style: null }, add), el("p", { class: "field-error", "data-error-for": `spec.${path}` }));
  }

  function renderForm() {
    const form = $("#spec-form");
    const parts = section(model, schema, "", null);
    // top-level groups become fieldsets already; the network's layers get the full width first
    form.replaceChildren(...parts);
  }

  function clearErrors() {
    for (const node of document.querySelectorAll("[data-error-for]")) node.textContent = "";
    for (const node of document.querySelectorAll(".invalid")) node.classList.remove("invalid");
    $("#submit-error").textContent = "";
  }

  /** Puts each API error beside its field (or the nearest enclosing one that is on the page). */
  function showErrors(error) {
    const unplaced = [];
    for (const item of error.errors.length ? error.errors : [{ field: "", message: error.message }]) {
      let field = item.field || "";
      let slot = null;
      while (field && !(slot = document.querySelector(`[data-error-for="${CSS.escape(field)}"]`))) {
        field = field.includes(".") || field.includes("[") ? field.replace(/(\.[^.[\]]+|\[-?\d+\])$/, "") : "";
      }
      if (jsonMode && field.startsWith("spec")) slot = document.querySelector('[data-error-for="spec"]');
      if (!slot) { unplaced.push(item.message); continue; }
      slot.textContent = slot.textContent ? `${slot.textContent}\n${item.message}` : item.message;
      const control = document.querySelector(`[data-field="${CSS.escape(field)}"]`);
      if (control) { control.classList.add("invalid"); control.scrollIntoView({ block: "center", behavior: "smooth" }); }
    }
    $("#submit-error").textContent = unplaced.join("\n");
  }

  async function loadDatasets(selected) {
    const list = await api("/v1/datasets");
    const select = $("#job-dataset");
    select.replaceChildren(...list.items.map((d) => el("option", { value: d.id,
      text: `${d.name} — ${d.num_train} train / ${d.num_test} test, ${d.num_classes} classes, ${d.input_shape.join("×")}${d.format === "builtin" ? " (built-in)" : ""}` })));
    if (selected) select.value = selected;
  }

  function setJsonMode(on) {
    if (!on) {
      try { model = JSON.parse($("#spec-json").value); } catch (error) {
        $('[data-error-for="spec"]').textContent = `Not valid JSON: ${error.message}`;
        return;
      }
      renderForm();
    } else $("#spec-json").value = JSON.stringify(model, null, 2);
    jsonMode = on;
    $("#spec-json").hidden = !on;
    $("#spec-form").hidden = on;
    $("#spec-mode").textContent = on ? "Edit as form" : "Edit as JSON";
    $('[data-error-for="spec"]').textContent = "";
  }

  $("#spec-mode").addEventListener("click", () => setJsonMode(!jsonMode));
  $("#spec-reset").addEventListener("click", () => {
    model = structuredClone(defaults);
    if (jsonMode) $("#spec-json").value = JSON.stringify(model, null, 2); else renderForm();
  });

  $("#upload-button").addEventListener("click", async () => {
    const file = $("#upload-file").files[0];
    $("#upload-error").textContent = "";
    if (!file) { $("#upload-error").textContent = "Choose a file first."; return; }
    const body = new FormData();
    body.append("file", file);
    if ($("#upload-name").value.trim()) body.append("name", $("#upload-name").value.trim());
    $("#upload-button").disabled = true;
    $("#upload-button").textContent = "Uploading…";
    try {
      const dataset = await api("/v1/datasets", { method: "POST", body });
      await loadDatasets(dataset.id);
      $("#upload-error").textContent = "";
    } catch (error) {
      $("#upload-error").textContent = error.message;
    } finally {
      $("#upload-button").disabled = false;
      $("#upload-button").textContent = "Upload";
    }
  });

  $("#submit-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors();
    let spec = model;
    if (jsonMode) {
      try { spec = JSON.parse($("#spec-json").value); } catch (error) {
        $('[data-error-for="spec"]').textContent = `Not valid JSON: ${error.message}`;
        return;
      }
    }
    const body = { dataset: $("#job-dataset").value, spec };
    const name = $("#job-title").value.trim();
    if (name) body.name = name;
    $("#submit-button").disabled = true;
    try {
      const job = await api("/v1/jobs", { method: "POST", json: body });
      location.hash = `#/jobs/${job.id}`;
    } catch (error) {
      showErrors(error);
    } finally {
      $("#submit-button").disabled = false;
    }
  });

  (async () => {
    try {
      const [info] = await Promise.all([api("/v1/spec"), loadDatasets()]);
      if (!alive) return;
      schema = info.json_schema;
      defaults = info.defaults;
      model = structuredClone(defaults);
      renderForm();
    } catch (error) {
      $("#submit-error").textContent = `Could not load the spec defaults: ${error.message}`;
    }
  })();
}

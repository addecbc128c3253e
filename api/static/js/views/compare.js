/**
 * The compare view (#/compare?jobs=ID,ID,...): two or more jobs side by side. The URL holds the
 * selection, so a comparison can be shared. It shows their final figures, the spec fields in which
 * they differ, and their per-epoch curves overlaid (compare_charts.EPOCH_METRICS: test and train
 * accuracy, loss, firing rates per layer, samples/s and the NeuroBench spiking metrics); a picker
 * of the latest jobs changes the selection. Refreshed every POLL_MS while one of them has not ended.
 */

import { api } from "../api.js";
import { COLORS, EPOCH_METRICS, plotEpochMetric } from "../compare_charts.js";
import { $, el } from "../dom.js";
import { fmtDuration, fmtPercent } from "../format.js";
import { TERMINAL, stateBadge } from "../job_status.js";
import { onLeave } from "../view.js";

const POLL_MS = 3000;
export const MAX_COMPARED = 12;
const ID = /^[A-Za-z0-9_-]{1,64}$/;

/** The job ids of a compare URL's query ("jobs=a,b,c"): valid ids, each once, at most MAX_COMPARED. */
export function selectionOf(query) {
  const ids = (new URLSearchParams(query).get("jobs") || "").split(",").filter((id) => ID.test(id));
  return [...new Set(ids)].slice(0, MAX_COMPARED);
}

/** The URL fragment of the compare view of these job ids. */
export const compareHash = (ids) => `#/compare?jobs=${ids.map(encodeURIComponent).join(",")}`;

/** {path: value} of every leaf of a spec: "network.layers[0].units" -> 800. */
export function flatten(value, prefix = "", out = {}) {
  if (Array.isArray(value)) value.forEach((item, k) => flatten(item, `${prefix}[${k}]`, out));
  else if (value !== null && typeof value === "object") {
    for (const [key, item] of Object.entries(value)) flatten(item, prefix ? `${prefix}.${key}` : key, out);
  } else out[prefix] = value;
  return out;
}

/** The spec fields whose values are not the same in every one of specs, in the first spec's order. */
export function differingFields(specs) {
  const flat = specs.map((spec) => flatten(spec));
  const keys = [...new Set(flat.flatMap((f) => Object.keys(f)))];
  return keys.filter((key) => new Set(flat.map((f) => JSON.stringify(f[key]))).size > 1)
    .map((key) => ({ key, values: flat.map((f) => f[key]) }));
}

export function showCompare(query) {
  const ids = selectionOf(query);
  const main = document.getElementById("view");
  main.replaceChildren(page(ids));
  document.title = "Compare · hm2bp";
  let alive = true;
  let timer = null;
  onLeave(() => { alive = false; clearTimeout(timer); });
  fillPicker(ids, () => alive);
  if (ids.length < 2) {
    $("#compare-status").textContent = "Pick two or more jobs to compare (here, or with the checkboxes of the job list).";
    return;
  }

  async function refresh() {
    let runs;
    try {
      runs = await Promise.all(ids.map(async (id) => {
        const url = `/v1/jobs/${encodeURIComponent(id)}`;
        const [job, metrics] = await Promise.all([api(url), api(`${url}/metrics`)]);
        return { id, job, epochs: metrics.epochs || [], final: metrics.final || {} };
      }));
    } catch (error) {
      if (alive) $("#compare-status").textContent = `Could not load the jobs: ${error.message}`;
      return;
    }
    if (!alive) return;
    runs.forEach((run, k) => { run.label = `${k + 1}. ${run.job.name}`; });
    $("#compare-status").textContent = `${runs.length} jobs`;
    $("#compare-figures").replaceChildren(figuresTable(runs));
    $("#compare-diff").replaceChildren(diffTable(runs));
    for (const metric of EPOCH_METRICS) plotEpochMetric(`compare-${metric.key}`, metric, runs);
    if (runs.some((run) => !TERMINAL.has(run.job.state))) timer = setTimeout(refresh, POLL_MS);
  }
  refresh();
}

function page(ids) {
  return el("section", { id: "compare" },
    el("div", { class: "page-head" },
      el("div", {}, el("p", { class: "crumbs" }, el("a", { href: "#/jobs", text: "Jobs" }), " / compare"),
        el("h1", { text: "Compare runs" }), el("p", { class: "muted", id: "compare-status" })),
      el("div", { class: "tools" }, el("button", { type: "button", class: "button", id: "compare-copy", text: "Copy link",
        onclick: () => navigator.clipboard && navigator.clipboard.writeText(location.href) }))),
    el("details", { class: "card picker", open: ids.length < 2 },
      el("summary", { text: "Choose jobs" }), el("div", { id: "compare-picker", class: "picker-list" }),
      el("button", { type: "button", class: "button primary", id: "compare-apply", text: "Compare selected" })),
    el("div", { class: "card flush" }, el("h2", { class: "pad", text: "Final figures" }), el("div", { id: "compare-figures" })),
    el("div", { class: "card flush" }, el("h2", { class: "pad", text: "Spec fields that differ" }), el("div", { id: "compare-diff" })),
    el("div", { class: "grid" }, ...EPOCH_METRICS.map((metric) => el("div", { class: "card" },
      el("h2", { text: metric.title }), el("div", { class: "chart", id: `compare-${metric.key}` })))),
  );
}

/** The picker: the latest 100 jobs as checkboxes, the current selection checked. */
async function fillPicker(ids, alive) {
  let jobs;
  try {
    jobs = (await api("/v1/jobs?limit=100")).items;
  } catch (error) { return; }
  if (!alive()) return;
  const chosen = new Set(ids);
  $("#compare-picker").replaceChildren(...jobs.map((job) => el("label", { class: "pick" },
    el("input", { type: "checkbox", value: job.id, checked: chosen.has(job.id) }), stateBadge(job.state),
    el("span", { text: job.name }), el("span", { class: "mono muted", text: job.id }))));
  $("#compare-apply").addEventListener("click", () => {
    const picked = [...document.querySelectorAll("#compare-picker input:checked")].map((box) => box.value);
    location.hash = compareHash(picked.slice(0, MAX_COMPARED));
  });
}

function swatch(k) {
  return el("span", { class: "swatch", style: `background:${COLORS[k % COLORS.length]}` });
}

function headRow(runs, first) {
  return el("tr", {}, el("th", { text: first }), ...runs.map((run, k) => el("th", {}, swatch(k),
    el("a", { href: `#/jobs/${run.id}`, text: run.label }))));
}

const lastOf = (run, key) => {
  const rows = run.epochs.filter((row) => row[key] !== undefined && row[key] !== null);
  return rows.length ? rows[rows.length - 1][key] : null;
};

function figuresTable(runs) {
  const seconds = (run) => run.final.train_seconds ?? run.epochs.reduce((sum, row) => sum + (row.seconds || 0), 0);
  const number = (value, digits) => (value === null || value === undefined ? "–" : Number(value).toFixed(digits));
  const rows = [
    ["state", (run) => stateBadge(run.job.state)],
    ["epochs", (run) => `${run.epochs.length} / ${run.job.spec.training.epochs}`],
    ["best test accuracy", (run) => fmtPercent(run.job.metrics && run.job.metrics.best_test_accuracy)],
    ["final test accuracy", (run) => fmtPercent(lastOf(run, "test_accuracy"))],
    ["final train accuracy", (run) => fmtPercent(lastOf(run, "train_accuracy"))],
    ["final loss", (run) => number(lastOf(run, "loss"), 3)],
    ["training time", (run) => fmtDuration(seconds(run))],
    ["samples / s (last epoch)", (run) => number(lastOf(run, "samples_per_sec"), 1)],
    ["activation sparsity", (run) => number(lastOf(run, "activation_sparsity"), 4)],
    ["synaptic ops / sample", (run) => number(lastOf(run, "synaptic_operations"), 0)],
    ["why it ended", (run) => (run.job.error ? run.job.error.message : "–")],
  ];
  return el("table", { class: "jobs compare-table", id: "compare-figures-table" },
    el("thead", {}, headRow(runs, "")),
    el("tbody", {}, ...rows.map(([name, cell]) => el("tr", { "data-row": name }, el("th", { text: name }),
      ...runs.map((run) => el("td", {}, cell(run)))))));
}

function diffTable(runs) {
  const fields = differingFields(runs.map((run) => run.job.spec));
  const shown = (value) => (value === undefined ? "–" : JSON.stringify(value));
  return el("table", { class: "jobs compare-table", id: "compare-diff-table" },
    el("thead", {}, headRow(runs, "field")),
    el("tbody", {}, ...(fields.length ? fields.map(({ key, values }) => el("tr", { "data-field": key },
      el("th", { class: "mono", text: key }), ...values.map((value) => el("td", { class: "mono", text: shown(value) }))))
      : [el("tr", {}, el("td", { colspan: runs.length + 1, class: "muted", text: "The specs are the same." }))])));
}

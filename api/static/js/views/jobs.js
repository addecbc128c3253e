/**
 * The job list (#/jobs): up to 200 jobs, optionally of one state (the filter is kept for the tab),
 * polled every POLL_MS while the page is shown. Each row: name (with id and tags), state, dataset
 * name (from GET /v1/datasets; the id while unknown), progress, best test accuracy, key parameters,
 * duration and creation time. Below 720 px wide each row is a card of labelled fields (style.css;
 * every cell carries its column's name in data-label).
 */

import { api } from "../api.js";
import { $, el } from "../dom.js";
import { fmtDuration, fmtPercent, fmtTime, jobSeconds } from "../format.js";
import { compareLink, pickBox } from "../job_picker.js";
import { setBar, specSummary, stateBadge } from "../job_status.js";
import { mount, onLeave } from "../view.js";

const POLL_MS = 2000;
const FILTER_KEY = "hm2bp.filter";

export function showJobs() {
  mount("tpl-jobs");
  document.title = "Jobs · hm2bp";
  const filter = $("#state-filter");
  filter.parentElement.prepend(compareLink());
  filter.value = sessionStorage.getItem(FILTER_KEY) || "";
  const columns = [...document.querySelectorAll("#jobs-table thead th")].map((th) => th.textContent);
  let datasets = new Map();  // dataset id -> name
  const looked = new Set();  // dataset ids GET /v1/datasets was asked about (a deleted one keeps its id)
  let timer = null;
  let alive = true;

  async function refresh() {
    try {
      const page = await api(`/v1/jobs?${listQuery(filter.value)}`);
      const unknown = page.items.map((job) => job.dataset).filter((id) => !datasets.has(id) && !looked.has(id));
      if (unknown.length) {
        unknown.forEach((id) => looked.add(id));
        const list = await api("/v1/datasets").catch(() => null);
        if (list) datasets = new Map(list.items.map((d) => [d.id, d.name]));
      }
      if (!alive) return;
      showPage(page, datasets, columns);
    } catch (error) {
      if (alive) $("#jobs-footer").textContent = `Could not load jobs: ${error.message}`;
    }
    if (alive) timer = setTimeout(refresh, POLL_MS);
  }

  filter.addEventListener("change", () => {
    sessionStorage.setItem(FILTER_KEY, filter.value);
    clearTimeout(timer);
    refresh();
  });
  onLeave(() => { alive = false; clearTimeout(timer); });
  refresh();
}

/** The query of GET /v1/jobs: up to 200 jobs, of one state unless state is "". */
function listQuery(state) {
  const query = new URLSearchParams({ limit: "200" });
  if (state) query.set("state", state);
  return query;
}

/** Fills the table from a page of GET /v1/jobs ({items, total}). */
function showPage(page, datasets, columns) {
  $("#jobs-table tbody").replaceChildren(...page.items.map((job) => jobRow(job, datasets, columns)));
  $("#jobs-empty").hidden = page.items.length > 0;
  $("#jobs-footer").textContent =
    `${page.items.length} of ${page.total} job${page.total === 1 ? "" : "s"} · updated ${fmtTime(new Date().toISOString())}`;
}

function jobRow(job, datasets, columns) {
  const inner = el("div");
  const bar = el("div", { class: "bar" }, inner);
  const label = setBar(inner, job);
  const best = job.metrics && job.metrics.best_test_accuracy;
  const tags = job.tags.length ? el("span", { class: "tags" }, ...job.tags.map((tag) => el("span", { class: "tag", text: tag }))) : null;
  const cells = [
    el("td", { class: "name" }, pickBox(job.id), el("a", { href: `#/jobs/${job.id}`, text: job.name }), el("span", { class: "mono", text: job.id }), tags),
    el("td", { class: "state" }, stateBadge(job.state)),
    el("td", { class: "dataset", text: datasets.get(job.dataset) || job.dataset, title: job.dataset }),
    el("td", { class: "progress" }, bar, el("div", { class: "bar-label", text: label })),
    el("td", { class: "num", text: fmtPercent(best) }),
    el("td", { class: "params", text: specSummary(job.spec) }),
    el("td", { class: "time duration", text: fmtDuration(jobSeconds(job)) }),
    el("td", { class: "time", text: fmtTime(job.created_at), title: job.created_at }),
  ];
  cells.forEach((cell, k) => cell.setAttribute("data-label", columns[k]));
  return el("tr", { "data-job": job.id }, ...cells);
}

/**
 * The job list (#/jobs): up to 200 jobs, optionally of one state (the filter is kept for the tab),
 * polled every POLL_MS while the page is shown.
 */

import { api } from "../api.js";
import { $, el } from "../dom.js";
import { fmtPercent, fmtTime } from "../format.js";
import { compareLink, pickBox } from "../job_picker.js";
import { setBar, stateBadge } from "../job_status.js";
import { mount, onLeave } from "../view.js";

const POLL_MS = 2000;
const FILTER_KEY = "hm2bp.filter";

export function showJobs() {
  mount("tpl-jobs");
  document.title = "Jobs · hm2bp";
  const filter = $("#state-filter");
  filter.parentElement.prepend(compareLink());
  filter.value = sessionStorage.getItem(FILTER_KEY) || "";
  let timer = null;
  let alive = true;

  async function refresh() {
    try {
      const page = await api(`/v1/jobs?${listQuery(filter.value)}`);
      if (!alive) return;
      showPage(page);
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
function showPage(page) {
  $("#jobs-table tbody").replaceChildren(...page.items.map(jobRow));
  $("#jobs-empty").hidden = page.items.length > 0;
  $("#jobs-footer").textContent =
    `${page.items.length} of ${page.total} job${page.total === 1 ? "" : "s"} · updated ${fmtTime(new Date().toISOString())}`;
}

function jobRow(job) {
  const inner = el("div");
  const bar = el("div", { class: "bar" }, inner);
  const label = setBar(inner, job);
  const best = job.metrics && job.metrics.best_test_accuracy;
  return el("tr", { "data-job": job.id },
    el("td", { class: "name" }, pickBox(job.id), el("a", { href: `#/jobs/${job.id}`, text: job.name }), el("span", { class: "mono", text: job.id })),
    el("td", {}, stateBadge(job.state)),
    el("td", { text: job.dataset }),
    el("td", {}, bar, el("div", { class: "bar-label", text: label })),
    el("td", { class: "num", text: fmtPercent(best) }),
    el("td", { class: "time", text: fmtTime(job.created_at), title: job.created_at }),
    el("td", { class: "time", text: fmtTime(job.finished_at), title: job.finished_at || "" }),
  );
}

/**
 * Sweeps: the list (#/sweeps) and one sweep's page (#/sweeps/ID), both polled every POLL_MS while
 * shown. The page lists every point or trial with its parameters, state (with why it was pruned),
 * progress and best objective, the best one marked; a parallel-coordinates plot of the parameters
 * against the objective; a link comparing all its jobs; and cancel for the whole sweep.
 */

import { api } from "../api.js";
import { plotParcoords } from "../compare_charts.js";
import { $, el } from "../dom.js";
import { fmtPercent, fmtTime } from "../format.js";
import { setBar, stateBadge } from "../job_status.js";
import { onLeave } from "../view.js";
import { MAX_COMPARED, compareHash } from "./compare.js";

const POLL_MS = 2000;

/** Runs load() now and every POLL_MS until the view is left or load() returns false. */
function poll(load) {
  let alive = true;
  let timer = null;
  onLeave(() => { alive = false; clearTimeout(timer); });
  const tick = async () => {
    const again = await load(() => alive);
    if (alive && again !== false) timer = setTimeout(tick, POLL_MS);
  };
  tick();
}

const methodOf = (sweep) => (sweep.search ? sweep.search.method : "grid");
const sizeOf = (sweep) => (methodOf(sweep) === "grid" ? sweep.jobs.length : sweep.search.budget);

export function showSweeps() {
  const main = document.getElementById("view");
  main.replaceChildren(el("section", {},
    el("div", { class: "page-head" }, el("h1", { text: "Sweeps" })),
    el("div", { class: "card flush" }, el("table", { class: "jobs", id: "sweeps-table" },
      el("thead", {}, el("tr", {}, ...["Name", "State", "Method", "Trials", "Best objective", "Created"].map((h) => el("th", { text: h })))),
      el("tbody"))),
    el("p", { class: "muted small", id: "sweeps-footer" })));
  document.title = "Sweeps · hm2bp";
  poll(async (alive) => {
    try {
      const page = await api("/v1/sweeps?limit=100");
      if (!alive()) return false;
      $("#sweeps-table tbody").replaceChildren(...page.items.map((sweep) => el("tr", { "data-sweep": sweep.id },
        el("td", { class: "name" }, el("a", { href: `#/sweeps/${sweep.id}`, text: sweep.name }), el("span", { class: "mono", text: sweep.id })),
        el("td", {}, el("span", { class: `badge ${sweep.state === "done" ? "succeeded" : "running"}`, text: sweep.state })),
        el("td", { text: methodOf(sweep) }),
        el("td", { text: `${sweep.jobs.length} / ${sizeOf(sweep)}` }),
        el("td", { class: "num", text: fmtPercent(sweep.leader && sweep.leader.objective) }),
        el("td", { class: "time", text: fmtTime(sweep.created_at) }))));
      $("#sweeps-footer").textContent = `${page.items.length} of ${page.total} sweeps`;
    } catch (error) {
      if (alive()) $("#sweeps-footer").textContent = `Could not load sweeps: ${error.message}`;
    }
    return true;
  });
}

export function showSweep(sweepId) {
  const url = `/v1/sweeps/${encodeURIComponent(sweepId)}`;
  const main = document.getElementById("view");
  main.replaceChildren(el("section", { id: "sweep" },
    el("div", { class: "page-head" },
      el("div", {}, el("p", { class: "crumbs" }, el("a", { href: "#/sweeps", text: "Sweeps" }), " / ", el("span", { class: "mono", text: sweepId })),
        el("h1", {}, el("span", { id: "sweep-name" }), " ", el("span", { id: "sweep-state", class: "badge" })),
        el("p", { class: "muted", id: "sweep-meta" })),
      el("div", { class: "tools" },
        el("a", { class: "button", id: "sweep-compare", text: "Compare all" }),
        el("button", { type: "button", class: "button danger", id: "sweep-cancel", text: "Cancel sweep" }))),
    el("p", { class: "field-error", id: "sweep-error", role: "alert" }),
    el("div", { class: "card" }, el("h2", { text: "Parameters against the objective" }),
      el("div", { class: "chart", id: "sweep-parcoords" }), el("p", { class: "muted small", id: "sweep-best" })),
    el("div", { class: "card flush" }, el("table", { class: "jobs", id: "sweep-table" }, el("thead"), el("tbody")))));
  let cancelled = false;
  $("#sweep-cancel").addEventListener("click", async () => {
    $("#sweep-cancel").disabled = true;
    try {
      await api(`${url}/cancel`, { method: "POST" });
      cancelled = true;
    } catch (error) {
      $("#sweep-error").textContent = `Cancel failed: ${error.message}`;
      $("#sweep-cancel").disabled = false;
    }
  });
  poll(async (alive) => {
    let sweep;
    try {
      sweep = await api(url);
    } catch (error) {
      if (alive()) $("#sweep-name").textContent = error.status === 404 ? "Sweep not found" : `Could not load the sweep: ${error.message}`;
      return error.status !== 404;
    }
    if (!alive()) return false;
    render(sweep, cancelled);
    return sweep.state !== "done";
  });
}

function render(sweep, cancelled) {
  document.title = `${sweep.name} · hm2bp`;
  const objective = (sweep.search && sweep.search.objective) || "test_accuracy";
  const keys = methodOf(sweep) === "grid" ? Object.keys(sweep.grid) : Object.keys(sweep.search.space);
  $("#sweep-name").textContent = sweep.name;
  const badge = $("#sweep-state");
  badge.className = `badge ${sweep.state === "done" ? "succeeded" : "running"}`;
  badge.textContent = sweep.state;
  const search = sweep.search || {};
  $("#sweep-meta").textContent = [`dataset ${sweep.dataset}`, `method ${methodOf(sweep)}`,
    `${sweep.jobs.length} of ${sizeOf(sweep)} trials made`,
    search.max_concurrent && methodOf(sweep) !== "grid" ? `at most ${search.max_concurrent} at once` : null,
    search.pruner && search.pruner !== "none" ? `pruner ${search.pruner}` : null, `objective ${objective}`,
    Object.entries(sweep.counts).map(([state, n]) => `${n} ${state}`).join(", ")].filter(Boolean).join(" · ");
  $("#sweep-cancel").disabled = cancelled || sweep.state === "done";
  const ids = sweep.jobs.map((job) => job.id);
  $("#sweep-compare").href = compareHash(ids.slice(0, MAX_COMPARED));
  $("#sweep-compare").classList.toggle("disabled", ids.length < 2);
  const best = sweep.best || sweep.leader;
  $("#sweep-best").textContent = best
    ? `${sweep.best ? "Best" : "Best so far"}: ${Object.entries(best.params).map(([k, v]) => `${k} = ${shown(v)}`).join(", ")}`
      + ` · ${objective} ${fmtPercent(best.objective)} (job ${best.job_id})` : "No trial has an objective yet.";
  $("#sweep-table thead").replaceChildren(el("tr", {}, el("th", { text: "#" }), ...keys.map((key) => el("th", { class: "mono", text: key })),
    el("th", { text: "State" }), el("th", { class: "progress-col", text: "Progress" }), el("th", { class: "num", text: `Best ${objective}` })));
  $("#sweep-table tbody").replaceChildren(...sweep.jobs.map((job, k) => {
    const inner = el("div");
    const bar = el("div", { class: "bar" }, inner);
    const label = setBar(inner, { state: job.state, progress: job.progress });
    const isBest = best && best.job_id === job.id;
    return el("tr", { "data-job": job.id, "data-state": job.state, class: isBest ? "best" : null },
      el("td", {}, el("a", { href: `#/jobs/${job.id}`, text: String(k + 1) }), isBest ? el("span", { class: "star", title: "best", text: " ★" }) : null),
      ...keys.map((key) => el("td", { class: "mono", text: shown(job.params[key]) })),
      el("td", {}, stateBadge(job.state), job.reason ? el("div", { class: "reason small muted", text: job.reason }) : null),
      el("td", {}, bar, el("div", { class: "bar-label", text: label })),
      el("td", { class: "num", text: fmtPercent(job.objective) }));
  }));
  plotParcoords("sweep-parcoords", keys, sweep.jobs, objective, best);
}

const shown = (value) => (typeof value === "number" && !Number.isInteger(value) ? value.toPrecision(4) : JSON.stringify(value));

/** A job's state and progress as the job list and the job page show them: the state badge and the progress bar. */

import { el } from "./dom.js";
import { fmtDuration } from "./format.js";

/** The states a job never leaves. */
export const TERMINAL = new Set(["succeeded", "failed", "cancelled", "pruned"]);

/** node (a new <span> by default) as the badge of state: class "badge STATE", the state as its text. */
export function stateBadge(state, node = el("span")) {
  node.className = `badge ${state}`;
  node.textContent = state;
  return node;
}

/**
 * Fraction done, and its label, from a job record's latest progress event:
 * fraction = ((epoch - 1) + step / steps) / epochs, clamped to [0, 1]; 1 once the job has succeeded.
 */
export function progressOf(job) {
  const p = job.progress;
  if (job.state === "succeeded") return { fraction: 1, label: p ? `${p.epochs} epochs` : "done" };
  if (!p) return { fraction: 0, label: job.state === "queued" ? "waiting for a worker" : "–" };
  const fraction = ((p.epoch - 1) + p.step / p.steps) / p.epochs;
  let label = `epoch ${p.epoch}/${p.epochs} · step ${p.step}/${p.steps}`;
  if (!TERMINAL.has(job.state) && p.eta_seconds !== null && p.eta_seconds !== undefined) label += ` · ETA ${fmtDuration(p.eta_seconds)}`;
  return { fraction: Math.min(1, Math.max(0, fraction)), label };
}

/** Sets a progress bar (barInner, inside its .bar) to the job's progress; returns the progress label. */
export function setBar(barInner, job) {
  const { fraction, label } = progressOf(job);
  barInner.style.width = `${(100 * fraction).toFixed(1)}%`;
  barInner.parentElement.classList.toggle("done", job.state === "succeeded");
  barInner.parentElement.classList.toggle("failed", job.state === "failed");
  return label;
}

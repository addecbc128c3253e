/**
 * A job as the job list and the job page show it: the state badge, the progress bar, and its key
 * parameters in one line.
 */

import { el } from "./dom.js";
import { fmtDuration, plural } from "./format.js";

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
  if (job.state === "succeeded") return { fraction: 1, label: p ? plural(p.epochs, "epoch") : "done" };
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

/** A layer's size as the dashboard writes it: 100 (dense units), c12 (conv channels), p2 (pool size). */
export const layerSize = (layer) => (layer.type === "conv" ? `c${layer.channels}` : layer.type === "pool" ? `p${layer.size}` : `${layer.units}`);

/** A resolved spec's key parameters: "100-10 · T 150 · 4 epochs · batch 8 · lr 0.01" (and the device unless auto). */
export function specSummary(spec) {
  const layers = (spec.network && spec.network.layers) || [];
  const training = spec.training || {};
  return [layers.map(layerSize).join("-"), spec.encoding && `T ${spec.encoding.time_steps}`,
    training.epochs && plural(training.epochs, "epoch"), training.batch_size && `batch ${training.batch_size}`,
    training.lr && `lr ${training.lr}`, training.device && training.device !== "auto" ? training.device : null]
    .filter(Boolean).join(" · ");
}

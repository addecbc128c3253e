/** Values as the dashboard prints them; "–" for a missing one. */

/** Seconds as "1h 05m", "3m 07s" or "42s" (rounded, never negative). */
export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "–";
  seconds = Math.max(0, Math.round(seconds));
  const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
  if (h) return `${h}h ${String(m).padStart(2, "0")}m`;
  if (m) return `${m}m ${String(s).padStart(2, "0")}s`;
  return `${s}s`;
}

/** An ISO timestamp as local time of day, with the date in front unless it is today. */
export function fmtTime(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  const today = new Date();
  const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  if (date.toDateString() === today.toDateString()) return time;
  return `${date.toLocaleDateString([], { month: "short", day: "numeric" })} ${time}`;
}

/** A fraction as a percentage with two decimals: 0.9712 -> "97.12 %". */
export const fmtPercent = (value) => (value === null || value === undefined ? "–" : `${(100 * value).toFixed(2)} %`);

/** count and noun, the noun plural unless count is 1: plural(1, "epoch") -> "1 epoch", plural(3, "epoch") -> "3 epochs". */
export const plural = (count, noun) => `${count} ${noun}${count === 1 ? "" : "s"}`;

/**
 * Seconds a job has run: from started_at to finished_at, or to now while it runs; null if it never
 * started (job: a Job JSON).
 */
export function jobSeconds(job, now = Date.now()) {
  if (!job.started_at) return null;
  const end = job.finished_at ? Date.parse(job.finished_at) : now;
  return Math.max(0, (end - Date.parse(job.started_at)) / 1000);
}

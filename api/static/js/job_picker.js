/**
 * The job list's selection for the compare view: a checkbox per job row and a "Compare" link that
 * opens #/compare?jobs=... with the checked jobs. The selection is kept in the tab's session
 * storage, so it survives the list's refreshes and filters.
 */

import { el } from "./dom.js";
import { MAX_COMPARED, compareHash } from "./views/compare.js";

const KEY = "hm2bp.compare";
const chosen = () => JSON.parse(sessionStorage.getItem(KEY) || "[]");
let link = null;

function save(ids) {
  sessionStorage.setItem(KEY, JSON.stringify(ids.slice(-MAX_COMPARED)));
  update();
}

function update() {
  if (!link) return;
  const ids = chosen();
  link.textContent = `Compare (${ids.length})`;
  link.href = compareHash(ids);
  link.classList.toggle("disabled", ids.length < 2);
  link.title = ids.length < 2 ? "check two or more jobs to compare them" : "";
}

/** The "Compare (n)" link of the job list's tools. */
export function compareLink() {
  link = el("a", { class: "button", id: "compare-selected" });
  update();
  return link;
}

/** The checkbox of one job row. */
export function pickBox(jobId) {
  return el("input", { type: "checkbox", class: "pick-job", "data-pick": jobId, "aria-label": "compare this job",
    checked: chosen().includes(jobId),
    onchange: (event) => save(event.target.checked ? [...chosen().filter((id) => id !== jobId), jobId]
      : chosen().filter((id) => id !== jobId)) });
}

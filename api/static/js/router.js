/**
 * Hash routes: #/signin, #/jobs (also the default), #/jobs/ID, #/submit, #/submit?from=ID (a clone
 * of job ID), #/compare?jobs=ID,ID,..., #/sweeps and #/sweeps/ID. Signed out, every route leads to
 * #/signin, which remembers the route asked for and goes there after signing in (a deep link opened
 * in a fresh tab). On the first route of a page load with a token in the tab (a reload), the session
 * cookie is refreshed from the token first; a refused token signs the tab out.
 */

import { $ } from "./dom.js";
import { REFUSED, forget, rememberNext, sessionChecked, startSession, token } from "./session.js";
import { leave } from "./view.js";
import { showJob } from "./views/job.js";
import { showJobs } from "./views/jobs.js";
import { showCompare } from "./views/compare.js";
import { showSweep, showSweeps } from "./views/sweep.js";
import { showSignIn } from "./views/signin.js";
import { showSubmit } from "./views/submit.js";

const JOB_ROUTE = /^#\/jobs\/([A-Za-z0-9_-]{1,64})$/;
const SWEEP_ROUTE = /^#\/sweeps\/([A-Za-z0-9_-]{1,64})$/;
const COMPARE_ROUTE = /^#\/compare(?:\?(.*))?$/;

/** Shows the view of the current URL fragment, after stopping the previous view. */
export async function route() {
  leave();
  const hash = location.hash || "#/jobs";
  const signedIn = Boolean(token());
  $("#nav").hidden = $("#account").hidden = !signedIn;
  if (!signedIn && hash !== "#/signin") { rememberNext(hash); location.hash = "#/signin"; return; }
  if (signedIn && !sessionChecked()) {
    const user = await startSession(token());
    if (!user) { signOut(REFUSED); return; }
    $("#whoami").textContent = user;
  }
  markActiveNav(hash);
  const jobMatch = hash.match(JOB_ROUTE);
  if (hash === "#/signin") showSignIn();
  else if (jobMatch) showJob(jobMatch[1]);
  else if (hash === "#/submit" || hash.startsWith("#/submit?")) showSubmit(new URLSearchParams(hash.split("?")[1] || "").get("from"));
  else if (hash.match(COMPARE_ROUTE)) showCompare(hash.match(COMPARE_ROUTE)[1] || "");
  else if (hash.match(SWEEP_ROUTE)) showSweep(hash.match(SWEEP_ROUTE)[1]);
  else if (hash === "#/sweeps") showSweeps();
  else showJobs();
}

/** Highlights the header link of the current route (not "Jobs" on a job's own page). */
function markActiveNav(hash) {
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("active", hash.startsWith(`#/${link.dataset.nav}`) && !(link.dataset.nav === "jobs" && hash.length > 7));
  }
}

/** Signs the tab out (notice: why, for the sign-in page) and shows the sign-in page. */
export function signOut(notice = "") {
  forget(notice);
  location.hash = "#/signin";
  if (location.hash === "#/signin") route();
}

/* hm2bp dashboard: ES modules, no build step, no CDN. This entry module wires the header and the
 * router. Under js/: the REST client (api.js), the tab's sign-in (session.js), the hash routes
 * (router.js), the current view's lifetime (view.js), the charts (charts.js), the job stream
 * (stream.js), the spec form (spec_schema.js, spec_form.js), helpers (dom.js, format.js,
 * job_status.js) and one module per view (views/).
 *
 * Rule for everything that comes from the API (job, dataset and layer names, log lines, errors):
 * it is put into the page with textContent or as a Plotly data value, never as HTML.
 */

import { onRefused } from "./js/api.js";
import { $ } from "./js/dom.js";
import { route, signOut } from "./js/router.js";
import { REFUSED } from "./js/session.js";

onRefused(() => signOut(REFUSED));
window.addEventListener("hashchange", route);
$("#signout").addEventListener("click", () => signOut());
route();

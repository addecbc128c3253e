/**
 * The tab's sign-in. The API token lives in sessionStorage (this tab only) and goes out as a bearer
 * header on REST calls (api.js). POST /v1/session turns it into an HttpOnly SameSite=Strict cookie,
 * which the websocket stream and plain download links use (the API checks their Origin);
 * DELETE /v1/session clears that cookie.
 */

const TOKEN_KEY = "hm2bp.token";
const NEXT_KEY = "hm2bp.next";  // the route a signed-out tab asked for, to open after signing in

/** The sign-in page's notice after the API refused the tab's token. */
export const REFUSED = "Your token was refused (revoked or invalid). Sign in again.";

let checked = false;  // whether POST /v1/session has accepted a token (and set the cookie) since the page loaded
let notice = "";      // why the tab was signed out, for the sign-in page

/** The tab's API token, or null when signed out. */
export const token = () => sessionStorage.getItem(TOKEN_KEY);

/** Whether POST /v1/session has accepted a token since the page loaded (by signing in, or on a reload). */
export const sessionChecked = () => checked;

/** Why the tab was last signed out ("" if it was not, or the user did it). */
export const signOutNotice = () => notice;

/** POST /v1/session with a candidate token: the user it belongs to, or null if the API refuses it. */
export async function startSession(candidate) {
  const response = await fetch("/v1/session", {
    method: "POST", credentials: "same-origin", headers: { Authorization: `Bearer ${candidate}` },
  });
  if (!response.ok) return null;
  checked = true;
  return (await response.json()).user;
}

/** Keeps an accepted token for this tab and clears the sign-out notice. */
export function remember(acceptedToken) {
  sessionStorage.setItem(TOKEN_KEY, acceptedToken);
  notice = "";
}

/** Drops the tab's token, keeps why (for the sign-in page), and asks the API to clear the cookie. */
export function forget(why) {
  sessionStorage.removeItem(TOKEN_KEY);
  notice = why;
  fetch("/v1/session", { method: "DELETE", credentials: "same-origin" }).catch(() => {});
}

/** Keeps the route a signed-out tab asked for (e.g. a deep link #/jobs/ID), for after signing in. */
export function rememberNext(hash) {
  sessionStorage.setItem(NEXT_KEY, hash);
}

/** The route to open after signing in (the one remembered, once; else the job list). */
export function takeNext() {
  const next = sessionStorage.getItem(NEXT_KEY);
  sessionStorage.removeItem(NEXT_KEY);
  return next && next.startsWith("#/") && next !== "#/signin" ? next : "#/jobs";
}

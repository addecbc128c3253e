/**
 * The REST client. api(path, {method, json, body, headers}) sends the tab's token as a bearer header
 * (and the session cookie), a json value as an application/json body, and resolves to the parsed
 * JSON response (null when empty). A response that is not 2xx rejects with an ApiError carrying the
 * status, the API's detail as message and its per-field errors. A 401 from anything but /v1/session
 * means the token was revoked: the handler given to onRefused runs (it signs the tab out) and the
 * call rejects with ApiError(401, "signed out").
 */

import { token } from "./session.js";

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.detail) || `HTTP ${status}`);
    this.status = status;
    this.errors = (body && body.errors) || [];  // [{field: "spec.training.epochs", message}, ...]
  }
}

let refused = () => {};

/** Sets what runs when the API refuses the tab's token. */
export function onRefused(handler) {
  refused = handler;
}

export async function api(path, { method = "GET", json, body, headers = {} } = {}) {
  const init = { method, headers: { ...headers }, credentials: "same-origin" };
  if (token()) init.headers.Authorization = `Bearer ${token()}`;
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (body !== undefined) init.body = body;
  const response = await fetch(path, init);
  if (response.status === 401 && path !== "/v1/session") {
    refused();
    throw new ApiError(401, { detail: "signed out" });
  }
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { detail: text }; }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

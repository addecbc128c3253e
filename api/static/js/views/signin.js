/**
 * The sign-in page (#/signin): a token is kept for the tab only once POST /v1/session accepts it;
 * then the page the tab asked for before signing in opens (the job list by default).
 */

import { $ } from "../dom.js";
import { remember, signOutNotice, startSession, takeNext } from "../session.js";
import { mount } from "../view.js";

export function showSignIn() {
  mount("tpl-signin");
  document.title = "Sign in · hm2bp";
  $("#signin-error").textContent = signOutNotice();
  $("#token").focus();
  $("#signin-form").addEventListener("submit", signIn);
}

async function signIn(event) {
  event.preventDefault();
  const candidate = $("#token").value.trim();
  const user = await startSession(candidate).catch(() => null);
  if (!user) {
    $("#signin-error").textContent = "This token was not accepted.";
    $("#token").classList.add("invalid");
    return;
  }
  remember(candidate);
  $("#whoami").textContent = user;
  location.hash = takeNext();
}

"use strict";
// Shared by the companion app and the reviewers' page. No inline code anywhere (the CSP
// forbids it); every text from the server goes in through textContent, never innerHTML.
// Each page defines SIGNED_IN_SECTIONS: what to hide when the session ends.
let csrf = null;
const $ = (id) => document.getElementById(id);

async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (csrf && method !== "GET") headers["X-CSRF-Token"] = csrf;
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "same-origin" });
  if (!response.ok) {
    // The server's own words (FastAPI's `detail`), so a lock-out never reads as a wrong password.
    const detail = await response.json().then((b) => (typeof b.detail === "string" ? b.detail : null), () => null);
    if (response.status === 401 && csrf !== null) signedOut();
    throw Object.assign(new Error(detail || response.statusText), { status: response.status, detail });
  }
  return response.json();
}

// The session ended (signed out elsewhere, password changed, account removed): say so.
function signedOut() {
  csrf = null;
  for (const id of SIGNED_IN_SECTIONS) $(id).hidden = true;
  const error = $("signin-error");
  error.textContent = "You were signed out. Sign in again to go on.";
  error.hidden = false;
  $("signin").hidden = false;
}

function show(el, message) { el.textContent = message; el.hidden = false; }

function text(tag, value, className) {
  const el = document.createElement(tag);
  el.textContent = value;
  if (className) el.className = className;
  return el;
}

// Asks before anything is deleted or removed; resolves true only on the dialog's OK.
function confirmDialog(message) {
  const dialog = $("confirm");
  $("confirm-text").textContent = message;
  return new Promise((resolve) => {
    const done = (answer) => { dialog.close(); $("confirm-ok").onclick = null; $("confirm-cancel").onclick = null; resolve(answer); };
    $("confirm-ok").onclick = () => done(true);
    $("confirm-cancel").onclick = () => done(false);
    dialog.oncancel = () => done(false);
    dialog.showModal();
  });
}

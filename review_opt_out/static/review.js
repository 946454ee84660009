"use strict";
// The reviewers' page: a reviewer hears and corrects clips, an admin manages accounts (common.js comes first).
const SIGNED_IN_SECTIONS = ["reviewing", "admin", "signout"];
let clip = null;
let myId = null;

async function nextClip() {
  const next = await api("GET", "/api/review/next");
  clip = next.clip;
  $("clip").hidden = clip === null;
  if (clip === null) { $("clip-status").textContent = "No clips are waiting for review."; return; }
  $("clip-status").textContent = "";
  $("clip-audio").src = `/api/review/clips/${encodeURIComponent(clip)}/audio`;
  $("correction").value = next.transcript || "";
}

async function loadReviewers() {
  const rows = await api("GET", "/api/review/reviewers");
  $("reviewers").replaceChildren(...rows.map((r) => {
    const tr = document.createElement("tr");
    const cell = document.createElement("td");
    if (r.id !== myId) {  // an admin cannot remove themselves (the server says so too)
      const remove = text("button", "Remove", "danger");
      remove.type = "button";
      remove.setAttribute("aria-label", `Remove ${r.name}`);
      remove.addEventListener("click", async () => {
        if (!(await confirmDialog(`Remove ${r.name}? Their open clips are withdrawn from review and they are signed out.`))) return;
        await api("DELETE", `/api/review/reviewers/${encodeURIComponent(r.id)}`);
        await loadReviewers();
      });
      cell.append(remove);
    }
    const role = r.activated ? r.role : `${r.role} · waiting for activation`;
    tr.append(text("td", r.name), text("td", role), text("td", String(r.open)), text("td", String(r.submitted)), cell);
    return tr;
  }));
}

async function enter() {
  const me = await api("GET", "/api/review/me");
  csrf = me.csrf_token;
  myId = me.id;
  $("signin").hidden = true;
  $("signout").hidden = false;
  if (me.role === "admin") { $("admin").hidden = false; await loadReviewers(); }
  else { $("reviewing").hidden = false; await nextClip(); }
}

$("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = $("signin-error");
  error.hidden = true;
  try {
    await api("POST", "/api/review/login", { login: $("name").value, password: $("password").value });
    await enter();
  } catch (e) {
    error.textContent = e.status === 429 && e.detail ? e.detail : e.status === 401 ? "Wrong name or password." : "Could not sign in right now; try again.";
    error.hidden = false;
  }
});
$("submit").addEventListener("click", async () => {
  try {
    await api("POST", `/api/review/clips/${encodeURIComponent(clip)}/transcript`, { text: $("correction").value });
    await nextClip();
    if (clip === null) $("clip-status").textContent = "Saved. No more clips are waiting for review.";
  } catch (e) {
    // Withdrawn meanwhile (the household opted out): never submitted, move on.
    $("clip-status").textContent = e.status === 404 ? "That clip was withdrawn from review." : e.message;
    $("clip").hidden = true;
  }
});
$("next").addEventListener("click", () => nextClip());
$("add-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("add-error").hidden = true;
  try {
    const name = $("new-name").value;
    const made = await api("POST", "/api/review/reviewers", { name, role: $("new-role").value });
    $("add-form").reset();
    $("activation-for").textContent = name;
    $("activation-link").textContent = new URL(made.activation_path, location.href).href;
    $("activation-result").hidden = false;
    await loadReviewers();
  } catch (e) { $("add-error").textContent = e.message; $("add-error").hidden = false; }
});
$("signout").addEventListener("click", async () => { await api("POST", "/api/logout"); location.replace("/review"); });

async function activate(token) {
  let account;
  try { account = await api("POST", "/api/review/activation", { token }); }
  catch (e) { show($("signin-error"), e.message); return; }
  $("activate-name").textContent = account.name;
  $("activate-role").textContent = account.role;
  $("signin").hidden = true;
  $("activate").hidden = false;
  $("activate-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const password = $("activate-password").value;
    try {
      await api("POST", "/api/review/activate", { token, password });
      history.replaceState(null, "", "/review");
      await api("POST", "/api/review/login", { login: account.name, password });
      $("activate").hidden = true;
      await enter();
    } catch (e) { show($("activate-error"), e.message); }
  });
}

const activation = location.hash.startsWith("#activate=") ? location.hash.slice("#activate=".length) : null;
if (activation) activate(activation);
else enter().catch(() => {});

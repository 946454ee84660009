"use strict";
let csrf = null;

async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (csrf && method !== "GET") headers["X-CSRF-Token"] = csrf;
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "same-origin" });
  if (!response.ok) {
    // The server's own words (FastAPI's `detail`), so a lock-out never reads as a wrong password.
    const detail = await response.json().then((b) => (typeof b.detail === "string" ? b.detail : null), () => null);
    throw Object.assign(new Error(detail || response.statusText), { status: response.status, detail });
  }
  return response.json();
}

function text(tag, value) { const el = document.createElement(tag); el.textContent = value; return el; }

function showConsent(view) {
  const toggle = document.getElementById("review-toggle");
  toggle.checked = view.review_allowed;
  document.getElementById("review-status").textContent = view.review_allowed
    ? "On: recordings made from now on may be reviewed."
    : "Off: nobody reviews your recordings.";
  document.getElementById("review-explanation").textContent = view.explanation;
  document.getElementById("retention").value = view.retention;
  document.getElementById("dont-keep").checked = !view.keep_recordings;
}

async function loadHistory() {
  const rows = await api("GET", "/api/consent/history");
  const body = document.getElementById("history");
  body.replaceChildren(...rows.map((r) => {
    const tr = document.createElement("tr");
    const where = { app: "in the app", voice: "by voice", admin: "by Earmark support", signup: "at sign-up" }[r.channel] || r.channel;
    tr.append(text("td", new Date(r.changed_at).toLocaleString()), text("td", r.review_allowed ? "Review on" : "Review off"),
              text("td", `${r.changed_by}, ${where}`));
    return tr;
  }));
}

async function loadRecordings() {
  const rows = await api("GET", "/api/recordings");
  const list = document.getElementById("recordings");
  document.getElementById("no-recordings").hidden = rows.length > 0;
  list.replaceChildren(...rows.map((r) => {
    const li = document.createElement("li");
    const audio = document.createElement("audio");
    audio.controls = true; audio.preload = "none"; audio.src = `/api/recordings/${encodeURIComponent(r.id)}/audio`;
    const remove = text("button", "Delete");
    remove.className = "danger";
    remove.addEventListener("click", async () => { await api("DELETE", `/api/recordings/${encodeURIComponent(r.id)}`); await loadRecordings(); });
    li.append(text("div", `${new Date(r.captured_at).toLocaleString()} · ${r.duration_seconds.toFixed(1)} s`),
              text("div", r.transcript || "(no transcript)"), audio, remove);
    return li;
  }));
}

async function enter() {
  const view = await api("GET", "/api/me");
  csrf = view.csrf_token;
  showConsent(view);
  document.getElementById("signin").hidden = true;
  document.getElementById("app").hidden = false;
  await Promise.all([loadHistory(), loadRecordings()]);
}

document.getElementById("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = document.getElementById("signin-error");
  error.hidden = true;
  try {
    await api("POST", "/api/login", { login: document.getElementById("email").value, password: document.getElementById("password").value });
    await enter();
  } catch (e) {
    error.textContent = e.status === 429 && e.detail ? e.detail
      : e.status === 401 ? "Wrong email or password."
      : "Could not sign in right now; try again."; error.hidden = false;
  }
});

document.getElementById("review-toggle").addEventListener("change", async (event) => {
  const toggle = event.target;
  toggle.disabled = true;
  try { showConsent(await api("PUT", "/api/consent", { review_allowed: toggle.checked })); await loadHistory(); }
  catch (e) { toggle.checked = !toggle.checked; document.getElementById("review-status").textContent = "Could not save; try again."; }
  finally { toggle.disabled = false; }
});

document.getElementById("retention").addEventListener("change", async (event) => {
  showConsent(await api("PUT", "/api/settings", { retention: event.target.value }));
});
document.getElementById("dont-keep").addEventListener("change", async (event) => {
  showConsent(await api("PUT", "/api/settings", { keep_recordings: !event.target.checked }));
});
document.getElementById("delete-range").addEventListener("click", async () => {
  const since = document.getElementById("since").value, until = document.getElementById("until").value;
  if (!since && !until) return;
  const body = {};
  if (since) body.since = new Date(since).toISOString();
  if (until) body.until = new Date(new Date(until).getTime() + 86400000).toISOString();
  await api("POST", "/api/recordings/delete", body); await loadRecordings();
});
document.getElementById("delete-all").addEventListener("click", async () => {
  if (!confirm("Delete all your recordings? This cannot be undone.")) return;
  await api("POST", "/api/recordings/delete", { all: true }); await loadRecordings();
});
document.getElementById("signout").addEventListener("click", async () => { await api("POST", "/api/logout"); location.reload(); });

enter().catch(() => {});  // already signed in? otherwise the sign-in form stays

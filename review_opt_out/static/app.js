"use strict";
// The companion app (common.js comes first).
const SIGNED_IN_SECTIONS = ["app", "join"];
let me = null;
const pages = { cursors: [null], index: 0, total: 0 };

function plural(n, one, many) { return `${n} ${n === 1 ? one : many}`; }

function showConsent(view) {
  $("review-toggle").checked = view.review_allowed;
  $("review-status").textContent = view.review_allowed
    ? "On: recordings made from now on may be reviewed."
    : "Off: nobody reviews your recordings.";
  $("review-explanation").textContent = view.explanation;
  $("retention").value = view.retention;
  $("dont-keep").checked = !view.keep_recordings;
  $("keep-note").hidden = view.keep_recordings;
}

async function loadHistory() {
  const rows = await api("GET", "/api/consent/history");
  $("history").replaceChildren(...rows.map((r) => {
    const tr = document.createElement("tr");
    const where = { app: "in the app", voice: "by voice", admin: "by Earmark support", signup: "at sign-up" }[r.channel] || r.channel;
    tr.append(text("td", new Date(r.changed_at).toLocaleString()), text("td", r.review_allowed ? "Review on" : "Review off"),
              text("td", `${r.changed_by}, ${where}`));
    return tr;
  }));
}

// The filter as the API takes it: a speaker, and local calendar days as instants.
function selection() {
  const chosen = {};
  if ($("filter-device").value) chosen.device_id = $("filter-device").value;
  if ($("filter-heard").checked) chosen.heard = true;
  if ($("since").value) chosen.since = new Date(`${$("since").value}T00:00`).toISOString();
  if ($("until").value) {
    // The next local midnight by the calendar, not +24 h: a clock change makes some days 23 or 25 h.
    const [y, m, d] = $("until").value.split("-").map(Number);
    chosen.until = new Date(y, m - 1, d + 1).toISOString();
  }
  return chosen;
}

function describe(chosen) {
  const parts = [];
  if (chosen.device_id) parts.push(`on speaker ${chosen.device_id}`);
  if (chosen.heard) parts.push("heard by a person");
  if ($("since").value) parts.push(`from ${$("since").value}`);
  if ($("until").value) parts.push(`until ${$("until").value}`);
  return parts.length ? ` (${parts.join(", ")})` : "";
}

function recordingItem(r) {
  const li = document.createElement("li");
  const when = new Date(r.captured_at).toLocaleString();
  const head = text("div", `${when} · ${r.duration_seconds.toFixed(1)} s · on speaker ${r.device_id}`, "meta");
  head.append(r.may_be_reviewed ? text("span", "May be reviewed", "badge review") : text("span", "Not for review", "badge"));
  // A request of which nothing was kept (muted, nothing said, or "don't keep") is a receipt, not a recording.
  const body = r.end_reason === "wake_rejected"
    ? "The speaker woke by mistake: Earmark did not hear its wake word, so nothing was recognized or kept."
    : r.transcript || (r.has_audio ? "(no transcript)" : "Nothing of this request was kept: no audio, no text.");
  li.append(head, text("div", body));
  if (r.heard) {  // a person (a reviewer, by the pseudonym this household sees) heard it
    const heardAt = new Date(r.heard.at).toLocaleString();
    const corrected = r.heard.corrected ? "; they corrected the transcript" : "";
    li.append(text("div", `Heard by a person: ${r.heard.by}, ${heardAt}${corrected}`, "heard"));
  }
  if (r.has_audio) {
    const audio = document.createElement("audio");
    audio.controls = true; audio.preload = "none"; audio.src = `/api/recordings/${encodeURIComponent(r.id)}/audio`;
    li.append(audio);
  }
  const remove = text("button", "Delete", "danger");
  remove.type = "button";
  remove.setAttribute("aria-label", `Delete the recording of ${when}`);
  remove.addEventListener("click", async () => {
    if (!(await confirmDialog(`Delete this recording from ${when}? This cannot be undone.`))) return;
    await api("DELETE", `/api/recordings/${encodeURIComponent(r.id)}`);
    await loadRecordings();
  });
  li.append(remove);
  return li;
}

async function loadRecordings() {
  const query = new URLSearchParams(selection());
  const cursor = pages.cursors[pages.index];
  if (cursor) query.set("after", cursor);
  const page = await api("GET", `/api/recordings?${query}`);
  if (page.items.length === 0 && pages.index > 0) { pages.index -= 1; return loadRecordings(); }
  pages.total = page.total;
  pages.cursors[pages.index + 1] = page.next;
  const select = $("filter-device"), current = select.value;
  select.replaceChildren(text("option", "All speakers"), ...page.devices.map((d) => text("option", d)));
  select.options[0].value = "";
  select.value = current;
  $("recordings").replaceChildren(...page.items.map(recordingItem));
  $("heard-summary").textContent = heardSummary(page.heard, page.total);
  const pageCount = Math.max(1, Math.ceil(page.total / 20));
  $("recordings-summary").textContent = page.total === 0 ? "No recordings." : plural(page.total, "recording", "recordings") + describe(selection());
  $("page-label").textContent = `Page ${pages.index + 1} of ${pageCount}`;
  $("newer").disabled = pages.index === 0;
  $("older").disabled = !page.next;
  $("delete-filtered").hidden = Object.keys(selection()).length === 0;
}

function heardSummary(heard, total) {
  if (heard.heard === 0) return "No one has heard any of your recordings.";
  const filtered = Object.keys(selection()).length > 0;  // the total is the filter's; the count is everything
  const count = filtered ? plural(heard.heard, "recording", "recordings") : `${heard.heard} of your ${plural(total, "recording", "recordings")}`;
  const since = heard.review_off_since
    ? ` ${heard.heard_since_review_off === 0 ? "None" : heard.heard_since_review_off} since you turned review off on ${new Date(heard.review_off_since).toLocaleDateString()}.`
    : "";
  return `${count} ${heard.heard === 1 ? "was" : "were"} heard by a reviewer.${since}`;
}

function restartPages() { pages.cursors = [null]; pages.index = 0; return loadRecordings(); }

async function deleteSelection(chosen, what) {
  const { count } = await api("POST", "/api/recordings/count", chosen);
  if (count === 0) { $("recordings-summary").textContent = "Nothing to delete."; return; }
  if (!(await confirmDialog(`Delete ${plural(count, "recording", "recordings")}${what}? This cannot be undone.`))) return;
  try {
    const { deleted } = await api("POST", "/api/recordings/delete", { ...chosen, expected_count: count });
    await restartPages();
    $("recordings-summary").textContent = `Deleted ${plural(deleted, "recording", "recordings")}. ` + $("recordings-summary").textContent;
  } catch (e) {
    if (e.status !== 409) throw e;
    $("recordings-summary").textContent = `${e.detail} Nothing was deleted.`;
  }
}

async function loadMembers() {
  const people = await api("GET", "/api/members");
  const owner = me.role === "owner";
  $("invite-form").hidden = !owner;
  $("members").replaceChildren(...people.map((p) => {
    const li = document.createElement("li");
    // Earmark sends no mail: an address from an invitation link is nobody's proof (members.py).
    const label = p.id === null ? `${p.name} <${p.email}> · invited`
      : `${p.name} <${p.email}> · ${p.role}${p.email_status === "unverified" ? " · email not verified" : ""}`;
    li.append(text("span", label));
    if (owner && p.id === null) {
      const withdraw = text("button", "Withdraw", "danger");
      withdraw.type = "button";
      withdraw.addEventListener("click", async () => {
        await api("POST", "/api/members/withdraw-invitation", { email: p.email });
        await loadMembers();
      });
      li.append(withdraw);
    }
    if (owner && p.id !== null && p.id !== me.member_id) {
      const remove = text("button", "Remove", "danger");
      remove.type = "button";
      remove.addEventListener("click", async () => {
        if (!(await confirmDialog(`Remove ${p.name} from your household? They are signed out at once.`))) return;
        try { await api("DELETE", `/api/members/${encodeURIComponent(p.id)}`); } catch (e) { alert(e.message); }
        await loadMembers();
      });
      li.append(remove);
    }
    return li;
  }));
}

async function enter() {
  me = await api("GET", "/api/me");
  csrf = me.csrf_token;
  showConsent(me);
  $("whoami").textContent = `${me.household} · signed in${me.role === "owner" ? " as an owner" : ""}`;
  $("signin").hidden = true;
  $("join").hidden = true;
  $("app").hidden = false;
  await Promise.all([loadHistory(), restartPages(), loadMembers()]);
}

async function signIn(login, password) {
  await api("POST", "/api/login", { login, password });
  await enter();
}

$("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = $("signin-error");
  error.hidden = true;
  try {
    await signIn($("email").value, $("password").value);
  } catch (e) {
    show(error, e.status === 429 && e.detail ? e.detail
      : e.status === 401 ? "Wrong email or password."
      : "Could not sign in right now; try again.");
  }
});

$("review-toggle").addEventListener("change", async (event) => {
  const toggle = event.target;
  toggle.disabled = true;
  // The recordings' "May be reviewed" and the heard summary follow the switch at once.
  try { showConsent(await api("PUT", "/api/consent", { review_allowed: toggle.checked })); await loadHistory(); await loadRecordings(); }
  catch (e) { toggle.checked = !toggle.checked; $("review-status").textContent = "Could not save; try again."; }
  finally { toggle.disabled = false; }
});
$("retention").addEventListener("change", async (event) => {
  showConsent(await api("PUT", "/api/settings", { retention: event.target.value }));
});
$("dont-keep").addEventListener("change", async (event) => {
  const toggle = event.target;
  if (toggle.checked) {
    // "Don't keep" deletes what is kept too: asked first, with the count, like every delete.
    const { count } = await api("POST", "/api/recordings/count", { all: true });
    const also = count ? ` and delete the ${plural(count, "recording", "recordings")} kept so far` : "";
    if (!(await confirmDialog(`Stop keeping your recordings${also}? This cannot be undone.`))) {
      toggle.checked = false;
      return;
    }
  }
  showConsent(await api("PUT", "/api/settings", { keep_recordings: !toggle.checked }));
});
for (const id of ["filter-device", "since", "until", "filter-heard"]) $(id).addEventListener("change", () => restartPages());
$("filters").addEventListener("submit", (event) => { event.preventDefault(); restartPages(); });
$("older").addEventListener("click", () => { pages.index += 1; loadRecordings(); });
$("newer").addEventListener("click", () => { pages.index = Math.max(0, pages.index - 1); loadRecordings(); });
$("delete-filtered").addEventListener("click", () => deleteSelection(selection(), describe(selection())));
$("delete-all").addEventListener("click", () => deleteSelection({ all: true }, " — all of them"));

$("invite-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("invite-error").hidden = true;
  try {
    const made = await api("POST", "/api/members/invite", { name: $("invite-name").value, email: $("invite-email").value, role: $("invite-role").value });
    // Opened on this machine (127.0.0.1, localhost), the page's own address reaches nobody
    // else: the link then names the address the server is known by on the network.
    const here = location.hostname.replace(/^\[|\]$/g, "");
    const loopback = here === "localhost" || here === "::1" || here.startsWith("127.");
    $("invite-link").textContent = made.invite_url && loopback ? made.invite_url : new URL(made.invite_path, location.href).href;
    $("invite-copied").textContent = "";
    $("invite-share").hidden = !navigator.share;
    $("invite-result").hidden = false;
    $("invite-form").reset();  // the next invitation starts from empty fields
    await loadMembers();
  } catch (e) { show($("invite-error"), e.message); }
});

$("password-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const result = $("password-result");
  try {
    await api("PUT", "/api/me/password", { current_password: $("current-password").value, new_password: $("new-password").value });
    result.className = "status";
    show(result, "Password changed. You stay signed in here; everywhere else you were signed in has been signed out.");
    $("password-form").reset();
  } catch (e) { result.className = "error"; show(result, e.message); }
});

// "Download my data": the browser saves the file itself (nothing held in the page), and
// the page says how far the server has written it.
$("export-start").addEventListener("click", async () => {
  const button = $("export-start"), status = $("export-status");
  button.disabled = true;
  try {
    const started = await api("POST", "/api/export");
    status.textContent = `Preparing ${plural(started.recordings, "recording", "recordings")}…`;
    const link = document.createElement("a");
    link.href = started.url;
    link.download = "";
    document.body.append(link);
    link.click();
    link.remove();
    for (;;) {
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const done = await api("GET", `/api/export/${started.id}/progress`);
      if (done.done) { status.textContent = `Your data is saved: ${plural(done.recordings, "recording", "recordings")}.`; break; }
      status.textContent = `Writing ${done.written} of ${plural(done.recordings, "recording", "recordings")}…`;
    }
  } catch (e) {
    status.textContent = e.detail || "The download could not start. Try again.";
  } finally {
    button.disabled = false;
  }
});

$("signout").addEventListener("click", async () => { await api("POST", "/api/logout"); location.replace("/"); });

async function join(token) {
  let invitation;
  try { invitation = await api("POST", "/api/invitation", { token }); }
  catch (e) { $("signin").hidden = false; show($("signin-error"), e.message); return; }
  $("join-household").textContent = invitation.household;
  $("join-email").textContent = invitation.email;
  $("signin").hidden = true;
  $("join").hidden = false;
  $("join-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const password = $("join-password").value;
    try {
      await api("POST", "/api/invitation/accept", { token, password });
      history.replaceState(null, "", "/");
      await signIn(invitation.email, password);
    } catch (e) { show($("join-error"), e.message); }
  });
}

$("invite-copy").addEventListener("click", async () => {
  const link = $("invite-link").textContent;
  try {
    await navigator.clipboard.writeText(link);
    $("invite-copied").textContent = "Copied.";
  } catch {
    // No clipboard (an insecure page, or refused): select the link so a long-press or Ctrl+C copies it.
    getSelection().selectAllChildren($("invite-link"));
    $("invite-copied").textContent = "Selected: copy it with Ctrl+C or a long press.";
  }
});
$("invite-share").addEventListener("click", () => {
  navigator.share({ title: "Join our household on Earmark", url: $("invite-link").textContent }).catch(() => {});
});

const invite = location.hash.startsWith("#invite=") ? location.hash.slice("#invite=".length) : null;
if (invite) join(invite);
else enter().catch(() => {});  // already signed in? otherwise the sign-in form stays

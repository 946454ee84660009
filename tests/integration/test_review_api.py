"""Companion app and reviewer API: authentication, CSRF, and who may see what."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from pipeline.store import SqlClipStore
from review_opt_out.app import create_app
from review_opt_out.auth import hash_password
from review_opt_out.registry import Channel, Registry
from tests.review_helpers import capture, two_households


@pytest.fixture
def world(tmp_path: Path, database: str | None) -> Iterator[tuple[SqlClipStore, Registry, TestClient]]:
    store, registry = two_households(tmp_path, database)
    registry.add_reviewer("rita", hash_password("reviewer pw"))
    registry.add_reviewer("sam", hash_password("reviewer pw"))
    with TestClient(create_app(registry), base_url="http://127.0.0.1") as client:
        yield store, registry, client


def sign_in(client: TestClient, email: str, path: str = "/api/login", password: str = "correct horse") -> str:
    response = client.post(path, json={"login": email, "password": password})
    assert response.status_code == 200, response.text
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    return str(response.json()["csrf_token"])


def activate(client: TestClient, token: str, password: str) -> None:
    """Open an activation link and choose a password, as the reviewer's page does."""
    account = client.post("/api/review/activation", json={"token": token})
    assert account.status_code == 200, account.text
    done = client.post("/api/review/activate", json={"token": token, "password": password})
    assert done.json() == {"name": account.json()["name"]}


def invite_link(client: TestClient, headers: dict[str, str], email: str, name: str = "Cy") -> str:
    """An owner's invitation token for `email`."""
    made = client.post("/api/members/invite", json={"email": email, "name": name}, headers=headers)
    assert made.status_code == 200, made.text
    return str(made.json()["invite_path"]).removeprefix("/#invite=")


def made_up_account(client: TestClient, owner: dict[str, str], email: str, password: str) -> None:
    """The owner invites `email` and opens the link himself, choosing its password."""
    joined = TestClient(client.app, base_url="http://127.0.0.1").post(
        "/api/invitation/accept", json={"token": invite_link(client, owner, email), "password": password}
    )
    assert joined.json() == {"email": email}


def test_no_session_is_401_and_a_wrong_password_too(world: tuple[SqlClipStore, Registry, TestClient]) -> None:
    _, _, client = world
    assert client.get("/api/me").status_code == 401
    assert client.put("/api/consent", json={"review_allowed": True}).status_code == 401
    assert client.get("/api/review/next").status_code == 401
    assert client.post("/api/login", json={"login": "ana@example.org", "password": "nope"}).status_code == 401
    assert client.post("/api/login", json={"login": "nobody@example.org", "password": "x"}).status_code == 401


def test_text_with_a_nul_character_is_refused_alike_on_both_databases(
    world: tuple[SqlClipStore, Registry, TestClient],
) -> None:
    _, _, client = world
    refused = client.post("/api/login", json={"login": "ana@example.org\u0000", "password": "correct horse"})
    assert (refused.status_code, refused.json()) == (422, {"detail": "text may not contain NUL characters"})
    token = sign_in(client, "ana@example.org")  # and the service, and that sign-in's slot, carry on
    assert client.get("/api/me", headers={"x-csrf-token": token}).status_code == 200


def test_bad_or_missing_csrf_is_403(world: tuple[SqlClipStore, Registry, TestClient]) -> None:
    _, registry, client = world
    csrf = sign_in(client, "ana@example.org")
    assert client.put("/api/consent", json={"review_allowed": True}).status_code == 403
    assert (
        client.put("/api/consent", json={"review_allowed": True}, headers={"X-CSRF-Token": "forged"}).status_code == 403
    )
    assert registry.household("h1").review_allowed is False
    ok = client.put("/api/consent", json={"review_allowed": True}, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 200 and ok.json()["review_allowed"] is True
    history = client.get("/api/consent/history").json()
    assert [(h["version"], h["review_allowed"], h["channel"]) for h in history] == [
        (2, True, "app"),
        (1, False, "signup"),
    ]


def test_a_member_cannot_read_or_change_another_household(world: tuple[SqlClipStore, Registry, TestClient]) -> None:
    store, registry, client = world
    theirs = capture(store, "h2", False, 1)
    mine = capture(store, "h1", False, 1)
    csrf = sign_in(client, "ana@example.org")
    assert [r["id"] for r in client.get("/api/recordings").json()["items"]] == [str(mine)]
    assert client.get(f"/api/recordings/{theirs}/audio").status_code == 404
    assert client.get(f"/api/recordings/{mine}/audio").content[:4] == b"RIFF"
    assert client.delete(f"/api/recordings/{theirs}", headers={"X-CSRF-Token": csrf}).status_code == 404
    assert store.get(theirs) is not None
    # The consent endpoint has no household parameter to point elsewhere; extra fields are refused.
    bad = client.put(
        "/api/consent", json={"review_allowed": True, "household_id": "h2"}, headers={"X-CSRF-Token": csrf}
    )
    assert bad.status_code == 422
    assert registry.household("h2").review_allowed is False
    # A member is not a reviewer.
    assert client.get("/api/review/next").status_code == 403


def test_delete_one_range_and_all(world: tuple[SqlClipStore, Registry, TestClient]) -> None:
    store, _, client = world
    old = capture(store, "h1", False, 1, age_days=30)
    mid = capture(store, "h1", False, 1, age_days=10)
    new = capture(store, "h1", False, 1)
    csrf = sign_in(client, "ana@example.org")
    headers = {"X-CSRF-Token": csrf}
    assert client.delete(f"/api/recordings/{new}", headers=headers).json() == {"deleted": 1}
    assert client.post("/api/recordings/delete", json={"expected_count": 2}, headers=headers).status_code == 422
    from datetime import UTC, datetime, timedelta

    since = (datetime.now(UTC) - timedelta(days=20)).isoformat()
    assert client.post("/api/recordings/count", json={"since": since}, headers=headers).json() == {"count": 1}
    # A delete carries the count the member confirmed; a different one deletes nothing.
    stale = client.post("/api/recordings/delete", json={"since": since, "expected_count": 2}, headers=headers)
    assert stale.status_code == 409 and stale.json()["detail"] == "1 recordings match now, not 2; confirm again"
    assert store.get(mid) is not None
    assert client.post("/api/recordings/delete", json={"since": since}, headers=headers).status_code == 422
    deleted = client.post("/api/recordings/delete", json={"since": since, "expected_count": 1}, headers=headers)
    assert deleted.json() == {"deleted": 1}
    assert store.get(mid) is None and store.get(old) is not None
    everything = {"all": True, "expected_count": 1}
    assert client.post("/api/recordings/delete", json=everything, headers=headers).json() == {"deleted": 1}
    assert client.get("/api/recordings").json()["items"] == []


def test_reviewers_see_only_pseudonyms_and_only_their_assignments(
    world: tuple[SqlClipStore, Registry, TestClient],
) -> None:
    store, registry, client = world
    version = registry.set_consent("h1", True, "m", Channel.APP).consent_version
    clip = capture(store, "h1", True, version)
    registry.sample(1.0)
    csrf = sign_in(client, "rita", path="/api/review/login", password="reviewer pw")
    assignment = client.get("/api/review/next").json()
    pseudonym = assignment["clip"]
    assert assignment["transcript"] == "turn on the lights"  # the recognizer's text, to correct
    assert set(assignment) == {"clip", "transcript"} and str(clip) not in pseudonym
    assert client.get(f"/api/review/clips/{pseudonym}/audio").content[:4] == b"RIFF"
    assert client.get(f"/api/review/clips/{clip}/audio").status_code == 404  # the real id is no key
    assert client.get("/api/review/clips/guess-123/audio").status_code == 404
    assert client.get("/api/me").status_code == 403  # a reviewer is not a member

    other = TestClient(client.app, base_url="http://127.0.0.1")
    sign_in(other, "sam", path="/api/review/login", password="reviewer pw")
    assert other.get(f"/api/review/clips/{pseudonym}/audio").status_code == 404  # not assigned to sam

    done = client.post(
        f"/api/review/clips/{pseudonym}/transcript", json={"text": "fixed"}, headers={"X-CSRF-Token": csrf}
    )
    assert done.status_code == 200


def test_the_household_sees_that_a_person_heard_a_recording_and_not_who(
    world: tuple[SqlClipStore, Registry, TestClient],
) -> None:
    store, registry, client = world
    version = registry.set_consent("h1", True, "m", Channel.APP).consent_version
    heard_clip, unheard_clip = capture(store, "h1", True, version), capture(store, "h1", True, version)
    registry.sample(1.0)
    reviewer = TestClient(client.app, base_url="http://127.0.0.1")
    csrf = sign_in(reviewer, "rita", path="/api/review/login", password="reviewer pw")
    pseudonym = reviewer.get("/api/review/next").json()["clip"]
    assert reviewer.get(f"/api/review/clips/{pseudonym}/audio").status_code == 200  # a person can hear it now
    reviewer.post(f"/api/review/clips/{pseudonym}/transcript", json={"text": "fixed"}, headers={"X-CSRF-Token": csrf})

    member_csrf = sign_in(client, "ana@example.org")
    page = client.get("/api/recordings").json()
    heard = {item["id"]: item["heard"] for item in page["items"]}
    [(heard_id, seen)] = [(clip_id, h) for clip_id, h in heard.items() if h is not None]
    assert heard_id in (str(heard_clip), str(unheard_clip)) and len(heard) == 2
    assert seen["by"].startswith("Reviewer ") and seen["corrected"] is True and seen["at"]
    assert "rita" not in client.get("/api/recordings").text and pseudonym not in seen["by"]
    only_heard = client.get("/api/recordings", params={"heard": "true"}).json()
    assert [item["id"] for item in only_heard["items"]] == [heard_id] and only_heard["total"] == 1
    assert page["heard"] == {
        "heard": 1, "last_heard_at": seen["at"], "review_off_since": None, "heard_since_review_off": 0,
    }  # fmt: skip
    # Another household sees the same reviewer under another name, so they cannot compare.
    registry.set_consent("h2", True, "m", Channel.APP)
    assert registry.heard_summary("h2")["heard"] == 0

    off = client.put("/api/consent", json={"review_allowed": False}, headers={"X-CSRF-Token": member_csrf})
    assert off.status_code == 200
    after = client.get("/api/recordings").json()["heard"]
    assert after["review_off_since"] is not None and after["heard_since_review_off"] == 0
    # A deleted recording takes its record of being heard with it.
    deleted = client.request(
        "DELETE", f"/api/recordings/{heard_id}", headers={"X-CSRF-Token": member_csrf}
    )  # fmt: skip
    assert deleted.status_code == 200
    assert client.get("/api/recordings").json()["heard"]["heard"] == 0


def test_a_strangers_guesses_lock_out_only_the_stranger(world: tuple[SqlClipStore, Registry, TestClient]) -> None:
    _, registry, client = world
    stranger = TestClient(client.app, base_url="http://127.0.0.1", client=("203.0.113.9", 40000))
    for _ in range(5):
        assert stranger.post("/api/login", json={"login": "ana@example.org", "password": "guess"}).status_code == 401
    locked = stranger.post("/api/login", json={"login": "ana@example.org", "password": "correct horse"})
    assert locked.status_code == 429  # even the right password waits out the window, from there
    assert locked.json()["detail"] == (
        "Too many wrong passwords for this account from this device. Sign-in is paused; try again in 15 minutes."
    )
    assert 890 <= int(locked.headers["retry-after"]) <= 900
    # Ana, at home, still gets in; so does the stranger to another account of theirs.
    assert client.post("/api/login", json={"login": "ana@example.org", "password": "correct horse"}).status_code == 200
    assert stranger.post("/api/login", json={"login": "bo@example.org", "password": "correct horse"}).status_code == 200
    client.app.state.earmark.failures.flush()
    failed = registry.db.execute(
        "SELECT action, detail FROM audit_log WHERE action LIKE '%sign_in_failed' ORDER BY seq"
    ).fetchall()
    # One aggregated entry, not one per guess.
    assert [(a, json.loads(d)) for a, d in failed] == [("member.sign_in_failed", {"refused": 1, "wrong_password": 5})]


def test_every_response_carries_the_security_headers_and_no_api_schema(
    world: tuple[SqlClipStore, Registry, TestClient],
) -> None:
    _, _, client = world
    for path in ("/", "/static/app.js", "/api/me", "/openapi.json"):
        response = client.get(path)
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
    assert client.get("/openapi.json").status_code == 404
    assert client.get("/docs").status_code == 404
    assert client.get("/static/../app.py").status_code == 404
    assert "<script>" not in client.get("/").text  # the CSP would block inline code
    # No redirect that echoes the Host header, and no answer at all under a foreign Host.
    assert client.get("/api/me/", follow_redirects=False).status_code == 404
    foreign = client.get("/api/me", headers={"host": "evil.example"})
    assert foreign.status_code == 400 and "content-security-policy" in foreign.headers


def test_recordings_come_in_pages_by_speaker_and_date_saying_who_heard_them_and_whether_they_may_be_reviewed(
    world: tuple[SqlClipStore, Registry, TestClient],
) -> None:
    store, registry, client = world
    store.enroll("hall-2", "h1")
    store.enroll("kitchen-1", "h1")
    version = registry.set_consent("h1", True, "ana", Channel.APP).consent_version
    made = []
    for n in range(25):
        device = "kitchen-1" if n % 5 else "hall-2"
        made.append(str(capture(store, "h1", n % 2 == 0, version, age_days=n, device_id=device)))
    sign_in(client, "ana@example.org")
    first = client.get("/api/recordings").json()
    assert first["total"] == 25 and len(first["items"]) == 20 and first["next"]
    assert first["devices"] == ["hall-2", "kitchen-1"]
    second = client.get("/api/recordings", params={"after": first["next"]}).json()
    assert len(second["items"]) == 5 and second["next"] is None
    # Newest first, each exactly once, across the two pages.
    assert [r["id"] for r in first["items"] + second["items"]] == made
    by_id = {r["id"]: r for r in first["items"] + second["items"]}
    assert by_id[made[0]]["device_id"] == "hall-2" and by_id[made[1]]["device_id"] == "kitchen-1"
    # The one eligibility rule: a clip tagged "no review" may never be reviewed.
    assert by_id[made[0]]["may_be_reviewed"] is True and by_id[made[1]]["may_be_reviewed"] is False
    hall = client.get("/api/recordings", params={"device_id": "hall-2"}).json()
    assert hall["total"] == 5 and {r["device_id"] for r in hall["items"]} == {"hall-2"}
    from datetime import UTC, datetime, timedelta

    week = client.get("/api/recordings", params={"since": (datetime.now(UTC) - timedelta(days=6.5)).isoformat()})
    assert week.json()["total"] == 7
    assert client.get("/api/recordings", params={"after": "nonsense"}).status_code == 422
    assert client.get("/api/recordings", params={"limit": 1000}).status_code == 422
    registry.set_consent("h1", False, "ana", Channel.APP)
    assert not any(r["may_be_reviewed"] for r in client.get("/api/recordings").json()["items"])


def test_an_owner_invites_and_removes_members_and_a_member_cannot(
    world: tuple[SqlClipStore, Registry, TestClient],
) -> None:
    _, registry, client = world
    csrf = sign_in(client, "ana@example.org")
    owner = {"X-CSRF-Token": csrf}
    bad = client.post("/api/members/invite", json={"email": "notanemail", "name": "Cy"}, headers=owner)
    assert bad.status_code == 422 and "not an email address" in bad.json()["detail"]
    invited = client.post("/api/members/invite", json={"email": "Cy@Example.org", "name": "Cy"}, headers=owner)
    assert invited.status_code == 200
    token = invited.json()["invite_path"].removeprefix("/#invite=")
    assert [m["email"] for m in client.get("/api/members").json()] == ["ana@example.org", "cy@example.org"]
    guest = TestClient(client.app, base_url="http://127.0.0.1")
    assert guest.post("/api/invitation", json={"token": token}).json() == {
        "household": "H1",
        "email": "cy@example.org",
        "name": "Cy",
    }
    short = guest.post("/api/invitation/accept", json={"token": token, "password": "short"})
    assert short.status_code == 422 and "at least 10 characters" in short.json()["detail"]
    assert guest.post("/api/invitation/accept", json={"token": token, "password": "cy's own pw"}).status_code == 200
    assert guest.post("/api/invitation/accept", json={"token": token, "password": "cy's own pw"}).status_code == 404
    cy_csrf = sign_in(guest, "cy@example.org", password="cy's own pw")
    cy = {"X-CSRF-Token": cy_csrf}
    assert guest.get("/api/me").json()["role"] == "member"
    ana_id = client.get("/api/me").json()["member_id"]
    cy_id = guest.get("/api/me").json()["member_id"]
    # A member sees the household but cannot change who is in it.
    assert (
        guest.post("/api/members/invite", json={"email": "d@example.org", "name": "D"}, headers=cy).status_code == 403
    )
    assert guest.delete(f"/api/members/{ana_id}", headers=cy).status_code == 403
    # Nor can an owner reach into another household, or remove the last owner.
    bo_id = registry.db.execute("SELECT member_id FROM members WHERE email = 'bo@example.org'").fetchone()[0]
    assert client.delete(f"/api/members/{bo_id}", headers=owner).status_code == 404
    assert client.delete(f"/api/members/{ana_id}", headers=owner).status_code == 409
    assert client.delete(f"/api/members/{cy_id}", headers=owner).json() == {"ok": True}
    assert guest.get("/api/me").status_code == 401  # removed: the session ended at once
    actions = [row[0] for row in registry.db.execute("SELECT action FROM audit_log WHERE subject = 'h1'")]
    assert {"member.invite", "member.join", "member.remove"} <= set(actions)


def test_changing_the_password_ends_the_other_sessions(world: tuple[SqlClipStore, Registry, TestClient]) -> None:
    _, _, client = world
    headers = {"X-CSRF-Token": sign_in(client, "ana@example.org")}
    phone = TestClient(client.app, base_url="http://127.0.0.1")
    sign_in(phone, "ana@example.org")
    change = {"current_password": "wrong one!", "new_password": "a much better one"}
    wrong = client.put("/api/me/password", json=change, headers=headers)
    assert wrong.status_code == 403 and wrong.json()["detail"] == "That is not your current password."
    short = client.put("/api/me/password", json={**change, "new_password": "short"}, headers=headers)
    assert short.status_code == 422
    ok = client.put("/api/me/password", json={**change, "current_password": "correct horse"}, headers=headers)
    assert ok.json() == {"ok": True}
    assert client.get("/api/me").status_code == 200 and phone.get("/api/me").status_code == 401
    fresh = TestClient(client.app, base_url="http://127.0.0.1")
    assert fresh.post("/api/login", json={"login": "ana@example.org", "password": "correct horse"}).status_code == 401
    sign_in(fresh, "ana@example.org", password="a much better one")


def test_review_admins_manage_reviewers_and_reviewers_review(
    world: tuple[SqlClipStore, Registry, TestClient],
) -> None:
    store, registry, client = world
    registry.add_reviewer("ada", hash_password("admin password"), "admin")
    version = registry.set_consent("h1", True, "m", Channel.APP).consent_version
    capture(store, "h1", True, version)
    registry.sample(1.0)
    admin = {"X-CSRF-Token": sign_in(client, "ada", path="/api/review/login", password="admin password")}
    assert client.get("/api/review/me").json()["role"] == "admin"
    assert client.get("/api/review/next").status_code == 403  # an admin does not hear clips
    names = [r["name"] for r in client.get("/api/review/reviewers").json()]
    assert names == ["ada", "rita", "sam"]
    new = {"name": "tom", "role": "reviewer"}
    chosen = client.post("/api/review/reviewers", json={**new, "password": "admin's pick"}, headers=admin)
    assert chosen.status_code == 422  # an admin sets no reviewer's password
    made = client.post("/api/review/reviewers", json=new, headers=admin).json()
    tom_id, token = made["id"], made["activation_path"].removeprefix("/review#activate=")
    assert made["valid_hours"] == 72 and len(token) >= 40
    assert client.post("/api/review/reviewers", json=new, headers=admin).status_code == 422  # the name is taken
    tom = TestClient(client.app, base_url="http://127.0.0.1")
    activate(tom, token, "tom's password")
    tom_headers = {"X-CSRF-Token": sign_in(tom, "tom", path="/api/review/login", password="tom's password")}
    assert tom.get("/api/review/next").json()["clip"] is not None
    assert tom.get("/api/review/reviewers").status_code == 403  # a reviewer does not manage accounts
    assert tom.post("/api/review/reviewers", json=new, headers=tom_headers).status_code == 403
    ada_id = registry.db.execute("SELECT reviewer_id FROM reviewers WHERE name = 'ada'").fetchone()[0]
    assert client.delete(f"/api/review/reviewers/{ada_id}", headers=admin).status_code == 409
    assert client.delete(f"/api/review/reviewers/{tom_id}", headers=admin).json() == {"ok": True}
    assert tom.get("/api/review/next").status_code == 401
    statuses = registry.db.execute("SELECT status FROM assignments WHERE reviewer_id = ?", (tom_id,)).fetchall()
    assert statuses == [("revoked",)]


def test_an_invitation_is_the_inviting_households_own_and_says_nothing_about_other_accounts(
    world: tuple[SqlClipStore, Registry, TestClient],
) -> None:
    _, _, client = world
    ana = {"X-CSRF-Token": sign_in(client, "ana@example.org")}
    bo_client = TestClient(client.app, base_url="http://127.0.0.1")
    bo = {"X-CSRF-Token": sign_in(bo_client, "bo@example.org")}
    first = client.post("/api/members/invite", json={"email": "cy@example.org", "name": "Cy"}, headers=ana).json()
    # Another household inviting the same address leaves h1's link working.
    assert bo_client.post("/api/members/invite", json={"email": "cy@example.org", "name": "Cy"}, headers=bo).is_success
    token = first["invite_path"].removeprefix("/#invite=")
    guest = TestClient(client.app, base_url="http://127.0.0.1")
    assert guest.post("/api/invitation", json={"token": token}).json()["household"] == "H1"
    assert [m["email"] for m in client.get("/api/members").json()] == ["ana@example.org", "cy@example.org"]
    # Inviting someone who already has an account answers like any other invitation.
    existing = client.post("/api/members/invite", json={"email": "bo@example.org", "name": "Bo"}, headers=ana)
    assert existing.status_code == 200
    assert client.post("/api/members/withdraw-invitation", json={"email": "bo@example.org"}, headers=ana).is_success
    assert [m["email"] for m in client.get("/api/members").json()] == ["ana@example.org", "cy@example.org"]
    # Only its own household's invitations can be withdrawn.
    gone = bo_client.post("/api/members/withdraw-invitation", json={"email": "bo@example.org"}, headers=bo)
    assert gone.status_code == 404


def test_a_reviewer_account_works_only_once_its_person_activates_it_and_every_step_is_audited(
    world: tuple[SqlClipStore, Registry, TestClient],
) -> None:
    store, registry, client = world
    ada_id = registry.add_reviewer("ada", hash_password("admin password"), "admin")
    version = registry.set_consent("h1", True, "m", Channel.APP).consent_version
    capture(store, "h1", True, version)
    registry.sample(1.0)
    admin = {"X-CSRF-Token": sign_in(client, "ada", path="/api/review/login", password="admin password")}
    made = client.post("/api/review/reviewers", json={"name": "tom"}, headers=admin).json()
    token = made["activation_path"].removeprefix("/review#activate=")
    stored = registry.db.execute("SELECT password_hash, activation_hash, created_by FROM reviewers WHERE name = 'tom'")
    assert stored.fetchone() == ("", hashlib.sha256(token.encode()).hexdigest(), ada_id)  # never the token
    tom = TestClient(client.app, base_url="http://127.0.0.1")
    # Not activated: nothing signs in, answered like any wrong password.
    refused = tom.post("/api/review/login", json={"login": "tom", "password": "tom's password"})
    assert (refused.status_code, refused.json()) == (401, {"detail": "Wrong name or password."})
    listed = {r["name"]: r for r in client.get("/api/review/reviewers").json()}
    assert (listed["tom"]["activated"], listed["tom"]["created_by"]) == (False, "ada")
    assert tom.post("/api/review/activation", json={"token": token}).json() == {"name": "tom", "role": "reviewer"}
    short = tom.post("/api/review/activate", json={"token": token, "password": "short"})
    assert short.status_code == 422 and "at least 10 characters" in short.json()["detail"]
    activate(tom, token, "tom's own password")
    # Single use: the link cannot set the password again, nor say whose it was.
    again = tom.post("/api/review/activate", json={"token": token, "password": "someone else's"})
    assert again.status_code == 404 and "unknown, used or expired" in again.json()["detail"]
    assert tom.post("/api/review/activation", json={"token": token}).status_code == 404
    sign_in(tom, "tom", path="/api/review/login", password="tom's own password")
    assert client.get("/api/review/reviewers").json()[2]["activated"] is True
    clip = tom.get("/api/review/next").json()["clip"]
    for _ in range(2):  # each time the audio is served, once more in the audit
        assert tom.get(f"/api/review/clips/{clip}/audio").status_code == 200
    tom_id = made["id"]
    entries = registry.db.execute(
        "SELECT actor, action, subject, detail FROM audit_log WHERE action <> 'reviewer.sign_in' "
        "AND (action LIKE 'reviewer.%' OR action LIKE 'review.%') ORDER BY seq"
    ).fetchall()
    trail = [(actor, action, subject) for actor, action, subject, _ in entries]
    assert trail[-5:] == [
        (ada_id, "reviewer.create", tom_id),
        (tom_id, "reviewer.activate", tom_id),
        (tom_id, "review.assign", clip),
        (tom_id, "review.fetch", clip),
        (tom_id, "review.fetch", clip),
    ]
    created, activated = (json.loads(detail) for *_, detail in entries[-5:-3])
    assert created == {"activation": True, "client": "testclient", "created_by": ada_id, "role": "reviewer"}
    assert activated == {"client": "testclient", "created_by": ada_id}


def test_an_activation_link_expires(world: tuple[SqlClipStore, Registry, TestClient]) -> None:
    _, registry, client = world
    _, token = registry.invite_reviewer("tom", "reviewer", actor="ada", client="127.0.0.1")
    with registry.transaction() as db:
        db.execute("UPDATE reviewers SET activation_expires_at = '2000-01-01T00:00:00+00:00' WHERE name = 'tom'")
    late = client.post("/api/review/activate", json={"token": token, "password": "tom's password"})
    assert late.status_code == 404 and "ask an admin for a new account" in late.json()["detail"]
    assert client.post("/api/review/login", json={"login": "tom", "password": "tom's password"}).status_code == 401


def test_an_invitation_answers_alike_whether_or_not_the_address_has_an_account(
    world: tuple[SqlClipStore, Registry, TestClient], database: str | None
) -> None:
    _, registry, client = world
    ana = {"X-CSRF-Token": sign_in(client, "ana@example.org")}
    statements: list[str] = []
    if database is None:  # SQLite shows every statement the invite runs (PostgreSQL runs the same code)
        registry.db._conn.set_trace_callback(statements.append)  # type: ignore[union-attr]

    def answer(email: str) -> tuple[int, list[str], int, int, list[str]]:
        statements.clear()
        made = client.post("/api/members/invite", json={"email": email, "name": "X"}, headers=ana)
        body = made.json()
        # The statements with their values taken out: the token, time and address differ.
        shapes = [s.split(" VALUES")[0] for s in statements if "audit_log" not in s and "sessions" not in s]
        return made.status_code, sorted(body), body["valid_days"], len(body["invite_path"]), shapes

    has_account, has_none = answer("bo@example.org"), answer("nobody@example.org")
    assert has_account == has_none and has_account[0] == 200
    assert database is not None or any("invitations" in s for s in has_account[4])
    assert not any("members" in s for s in has_account[4])  # the invite never looks the address up


def test_an_owner_who_opens_his_own_invitation_cannot_keep_the_address_from_its_owner(
    world: tuple[SqlClipStore, Registry, TestClient],
) -> None:
    _, _, client = world
    ana = {"X-CSRF-Token": sign_in(client, "ana@example.org")}
    # The attack: Ana invites an address she does not own and opens the link herself.
    squat = TestClient(client.app, base_url="http://127.0.0.1")
    squatted = squat.post("/api/invitation/accept", json={"token": invite_link(client, ana, "cy@example.org"),
                                                          "password": "ana's pick for cy"})  # fmt: skip
    assert squatted.json() == {"email": "cy@example.org"}
    sign_in(squat, "cy@example.org", password="ana's pick for cy")
    listed = {m["name"]: m for m in client.get("/api/members").json()}
    assert (listed["Cy"]["email"], listed["Cy"]["email_status"]) == ("cy@example.org", "unverified")
    # The real Cy joins her own household (Bo's) through its invitation, with her own password.
    bo_client = TestClient(client.app, base_url="http://127.0.0.1")
    bo = {"X-CSRF-Token": sign_in(bo_client, "bo@example.org")}
    cy = TestClient(client.app, base_url="http://127.0.0.1")
    joined = cy.post("/api/invitation/accept", json={"token": invite_link(bo_client, bo, "cy@example.org"),
                                                     "password": "cy's own password"})  # fmt: skip
    assert joined.json() == squatted.json()  # answered as any join
    sign_in(cy, "cy@example.org", password="cy's own password")
    assert cy.get("/api/me").json()["household"] == "H2"
    # Ana's made-up account stays in Ana's household, and opens nothing of Cy's.
    assert squat.get("/api/me").json()["household"] == "H1"
    again = TestClient(client.app, base_url="http://127.0.0.1")
    sign_in(again, "cy@example.org", password="ana's pick for cy")
    assert again.get("/api/me").json()["household"] == "H1"
    in_h2 = {m["email"]: m["email_status"] for m in bo_client.get("/api/members").json()}
    assert in_h2["cy@example.org"] == "unverified"
    # Nobody can knock Cy out either: another invitation accepted for her address changes nothing of hers.
    third = TestClient(client.app, base_url="http://127.0.0.1")
    refused = third.post("/api/invitation/accept", json={"token": invite_link(client, ana, "cy@example.org"),
                                                         "password": "yet another pick"})  # fmt: skip
    # Only Ana's own household is named: she knows its members anyway.
    assert refused.status_code == 422 and "already a member of this household" in refused.json()["detail"]
    assert cy.get("/api/me").json()["household"] == "H2", "Cy's session outlives every other household's doings"
    sign_in(TestClient(client.app, base_url="http://127.0.0.1"), "cy@example.org", password="cy's own password")


def test_accepting_for_an_address_with_an_account_elsewhere_answers_alike_and_touches_nothing(
    world: tuple[SqlClipStore, Registry, TestClient],
) -> None:
    _, registry, client = world
    ana = {"X-CSRF-Token": sign_in(client, "ana@example.org")}
    bo_phone = TestClient(client.app, base_url="http://127.0.0.1")
    sign_in(bo_phone, "bo@example.org")  # Bo's address was vouched for by the operator
    guest = TestClient(client.app, base_url="http://127.0.0.1")
    answers = [
        guest.post("/api/invitation/accept", json={"token": invite_link(client, ana, email), "password": "ana's pick!"})
        for email in ("bo@example.org", "dee@example.org")
    ]
    assert [(a.status_code, a.json()) for a in answers] == [
        (200, {"email": "bo@example.org"}),
        (200, {"email": "dee@example.org"}),
    ]
    # Both made-up accounts work alike for whoever chose their passwords (no oracle there
    # either), and Bo keeps his account, his password and his session.
    for email in ("bo@example.org", "dee@example.org"):
        made_up = TestClient(client.app, base_url="http://127.0.0.1")
        sign_in(made_up, email, password="ana's pick!")
        assert made_up.get("/api/me").json()["household"] == "H1"
    assert bo_phone.get("/api/me").json()["household"] == "H2"
    sign_in(TestClient(client.app, base_url="http://127.0.0.1"), "bo@example.org")
    assert registry.db.execute(
        "SELECT household_id, email_status FROM members WHERE email = 'bo@example.org' ORDER BY household_id"
    ).fetchall() == [("h1", "unverified"), ("h2", "verified")]


def test_sign_in_does_the_same_argon2_work_however_many_households_know_an_address(
    world: tuple[SqlClipStore, Registry, TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    from review_opt_out import auth

    _, _, client = world
    ana = {"X-CSRF-Token": sign_in(client, "ana@example.org")}
    made_up_account(client, ana, "bo@example.org", "ana's pick!")
    checks: list[str | None] = []
    real = auth._verify
    monkeypatch.setattr(auth, "_verify", lambda stored, password: checks.append(stored) or real(stored, password))
    stranger = TestClient(client.app, base_url="http://127.0.0.1")
    work = {}
    for email in ("bo@example.org", "ana@example.org", "nobody@example.org"):  # two accounts, one, none
        checks.clear()
        assert stranger.post("/api/login", json={"login": email, "password": "a wrong guess"}).status_code == 401
        work[email] = len(checks)
    assert set(work.values()) == {auth.MEMBER_CHECKS}, work


def test_signing_in_to_ones_own_made_up_account_does_not_reset_the_guesses_at_anothers(
    world: tuple[SqlClipStore, Registry, TestClient],
) -> None:
    _, _, client = world
    ana = {"X-CSRF-Token": sign_in(client, "ana@example.org")}
    # Ana makes up an account for Bo's address in her own household, with a password she knows.
    made_up_account(client, ana, "bo@example.org", "ana's pick!")
    guesser = TestClient(client.app, base_url="http://127.0.0.1")

    def attempt(password: str) -> int:
        return guesser.post("/api/login", json={"login": "bo@example.org", "password": password}).status_code

    assert [attempt(f"guess {n}") for n in range(4)] == [401] * 4
    assert attempt("ana's pick!") == 200  # her own account: the count of guesses at Bo's stays
    assert attempt("guess 5") == 401
    assert attempt("guess 6") == 429, "five wrong passwords for the address from this client, whatever came between"
    # Bo, at home, is not counted down by his own right passwords either.
    bo = TestClient(client.app, base_url="http://127.0.0.1", client=("192.0.2.7", 50000))
    for _ in range(6):
        assert bo.post("/api/login", json={"login": "bo@example.org", "password": "correct horse"}).status_code == 200

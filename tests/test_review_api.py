"""Companion app and reviewer API: authentication, CSRF, and who may see what."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from pipeline.store import SQLiteClipStore
from review_opt_out.app import create_app
from review_opt_out.auth import add_member, hash_password
from review_opt_out.registry import Channel, Registry
from tests.review_helpers import capture, open_both


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[SQLiteClipStore, Registry, TestClient]]:
    store, registry = open_both(tmp_path)
    for household, email in (("h1", "ana@example.org"), ("h2", "bo@example.org")):
        registry.create_household(household, household.upper())
        add_member(registry, household, email, email.split("@")[0], "correct horse")
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


def test_no_session_is_401_and_a_wrong_password_too(world: tuple[SQLiteClipStore, Registry, TestClient]) -> None:
    _, _, client = world
    assert client.get("/api/me").status_code == 401
    assert client.put("/api/consent", json={"review_allowed": True}).status_code == 401
    assert client.get("/api/review/next").status_code == 401
    assert client.post("/api/login", json={"login": "ana@example.org", "password": "nope"}).status_code == 401
    assert client.post("/api/login", json={"login": "nobody@example.org", "password": "x"}).status_code == 401


def test_bad_or_missing_csrf_is_403(world: tuple[SQLiteClipStore, Registry, TestClient]) -> None:
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


def test_a_member_cannot_read_or_change_another_household(world: tuple[SQLiteClipStore, Registry, TestClient]) -> None:
    store, registry, client = world
    theirs = capture(store, "h2", False, 1)
    mine = capture(store, "h1", False, 1)
    csrf = sign_in(client, "ana@example.org")
    assert [r["id"] for r in client.get("/api/recordings").json()] == [str(mine)]
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


def test_delete_one_range_and_all(world: tuple[SQLiteClipStore, Registry, TestClient]) -> None:
    store, _, client = world
    old = capture(store, "h1", False, 1, age_days=30)
    mid = capture(store, "h1", False, 1, age_days=10)
    new = capture(store, "h1", False, 1)
    csrf = sign_in(client, "ana@example.org")
    headers = {"X-CSRF-Token": csrf}
    assert client.delete(f"/api/recordings/{new}", headers=headers).json() == {"deleted": 1}
    assert client.post("/api/recordings/delete", json={}, headers=headers).status_code == 422
    from datetime import UTC, datetime, timedelta

    since = (datetime.now(UTC) - timedelta(days=20)).isoformat()
    assert client.post("/api/recordings/delete", json={"since": since}, headers=headers).json() == {"deleted": 1}
    assert store.get(mid) is None and store.get(old) is not None
    assert client.post("/api/recordings/delete", json={"all": True}, headers=headers).json() == {"deleted": 1}
    assert client.get("/api/recordings").json() == []


def test_reviewers_see_only_pseudonyms_and_only_their_assignments(
    world: tuple[SQLiteClipStore, Registry, TestClient],
) -> None:
    store, registry, client = world
    version = registry.set_consent("h1", True, "m", Channel.APP).consent_version
    clip = capture(store, "h1", True, version)
    registry.sample(1.0)
    csrf = sign_in(client, "rita", path="/api/review/login", password="reviewer pw")
    assignment = client.get("/api/review/next").json()
    pseudonym = assignment["clip"]
    assert set(assignment) == {"clip"} and str(clip) not in pseudonym
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


def test_a_strangers_guesses_lock_out_only_the_stranger(world: tuple[SQLiteClipStore, Registry, TestClient]) -> None:
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
    client.app.state.failed_sign_ins.flush()
    failed = registry.db.execute(
        "SELECT action, detail FROM audit_log WHERE action LIKE '%sign_in_failed' ORDER BY seq"
    ).fetchall()
    # One aggregated entry, not one per guess.
    assert [(a, json.loads(d)) for a, d in failed] == [("member.sign_in_failed", {"refused": 1, "wrong_password": 5})]


def test_every_response_carries_the_security_headers_and_no_api_schema(
    world: tuple[SQLiteClipStore, Registry, TestClient],
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

"""'Download my data' (issue 28, item 3): what the zip holds, what it never holds, its limits."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from contract.consent_signature import load_public_key
from pipeline.store import SqlClipStore
from review_opt_out import audit_proof, export
from review_opt_out.app import create_app
from review_opt_out.auth import add_member, hash_password
from review_opt_out.errors import NotFound
from review_opt_out.registry import Channel, Registry
from review_opt_out.signing import public_key_path
from tests.review_helpers import capture, make_clip, open_both, two_households


@pytest.fixture
def world(tmp_path: Path, database: str | None) -> Iterator[tuple[SqlClipStore, Registry, TestClient]]:
    store, registry = two_households(tmp_path, database)
    with TestClient(create_app(registry), base_url="http://127.0.0.1") as client:
        yield store, registry, client


def signed_in(app: Any, email: str) -> TestClient:
    client = TestClient(app, base_url="http://127.0.0.1")
    answer = client.post("/api/login", json={"login": email, "password": "correct horse"})
    assert answer.status_code == 200, answer.text
    client.headers["x-csrf-token"] = answer.json()["csrf_token"]
    return client


def download(client: TestClient) -> tuple[zipfile.ZipFile, dict[str, Any]]:
    started = client.post("/api/export")
    assert started.status_code == 200, started.text
    with client.stream("GET", started.json()["url"]) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/zip"
        assert "attachment" in answer.headers["content-disposition"]
        body = b"".join(answer.iter_bytes())
    return zipfile.ZipFile(io.BytesIO(body)), started.json()


def test_the_zip_holds_the_households_data_and_nothing_else(
    world: tuple[SqlClipStore, Registry, TestClient], tmp_path: Path
) -> None:
    store, registry, client = world
    version = registry.set_consent("h1", True, "ana", Channel.APP).consent_version
    kept = [capture(store, "h1", True, version) for _ in range(3)]
    deleted = capture(store, "h1", True, version)
    assert registry.delete("h1", "ana", clip_id=str(deleted)) == 1
    neighbour = capture(store, "h2", False, 1)
    assert registry.sample(1.0) == 3
    rita = registry.add_reviewer("rita", hash_password("reviewer pw"))
    assignment = registry.next_assignment(rita)
    assert assignment is not None and registry.reviewer_audio(rita, assignment)

    archive, started = download(signed_in(client.app, "ana@example.org"))
    names = archive.namelist()
    assert names[:3] == ["README.txt", "household.json", "recordings.jsonl"] and names[-1] == "audit-proof.json"
    assert "deleted means gone" in archive.read("README.txt").decode()
    lines = [json.loads(line) for line in archive.read("recordings.jsonl").decode().splitlines()]
    assert started["recordings"] == 3 and sorted(r["id"] for r in lines) == sorted(str(u) for u in kept)
    assert all(r["review_allowed_at_capture"] is True and r["transcript"] == "turn on the lights" for r in lines)
    assert [r["heard"]["by"].startswith("Reviewer ") for r in lines if r["heard"]] == [True]
    data = b"".join(archive.read(name) for name in names if name != "audit-proof.json").decode("latin-1")
    assert str(deleted) not in data and str(neighbour) not in data and "bo@example.org" not in data
    # The signed history says a recording was deleted, when and by whom: that record, and no more.
    proven = archive.read("audit-proof.json").decode()
    assert proven.count(str(deleted)) == 1 and '"recordings.delete"' in proven and str(neighbour) not in proven
    assert "rita" not in data + proven  # a reviewer is a pseudonym to households
    for line in lines:
        assert archive.read(line["audio"]) == registry.recording_audio("h1", line["id"])
    household = json.loads(archive.read("household.json"))
    assert household["household"]["household_id"] == "h1"
    assert [m["email"] for m in household["members"]] == ["ana@example.org"]
    assert [c["review_allowed"] for c in household["review_setting_changes"]] == [True, False]
    proof = audit_proof.HouseholdProof.model_validate_json(archive.read("audit-proof.json"))
    assert audit_proof.verify_proof(proof, load_public_key(public_key_path(tmp_path))) == []
    assert "data.export" in {entry.action for entry in proof.entries}  # the export itself is audited


def test_exports_are_limited_per_household_whichever_app_serves_them(
    world: tuple[SqlClipStore, Registry, TestClient], tmp_path: Path, database: str | None
) -> None:
    _, registry, client = world
    # A second app process on the same database: the limit is the database's, not a process's.
    other = Registry(tmp_path, database=database)
    apps = [client.app, create_app(other)]
    ana = [signed_in(app, "ana@example.org") for app in apps]
    for n in range(export.EXPORTS_PER_HOUR):
        assert ana[n % 2].post("/api/export").status_code == 200
    refused = ana[1].post("/api/export")
    assert refused.status_code == 429 and "3 times in the last hour" in refused.json()["detail"]
    assert 1 <= int(refused.headers["retry-after"]) <= 3601
    assert signed_in(apps[0], "bo@example.org").post("/api/export").status_code == 200  # another household
    audited = registry.db.execute("SELECT subject FROM audit_log WHERE action = 'data.export'").fetchall()
    assert sorted(row[0] for row in audited) == ["h1"] * export.EXPORTS_PER_HOUR + ["h2"]
    other.close()


def test_a_download_link_works_once_and_for_its_household_only(
    world: tuple[SqlClipStore, Registry, TestClient],
) -> None:
    _, _, client = world
    ana, bo = signed_in(client.app, "ana@example.org"), signed_in(client.app, "bo@example.org")
    url = ana.post("/api/export").json()["url"]
    assert bo.get(url).status_code == 404  # another household's link is no link
    assert bo.get(f"{url}/progress").status_code == 404
    assert ana.get(url).status_code == 200
    assert ana.get(url).status_code == 404  # once
    assert ana.get(f"{url}/progress").json()["done"] is True
    assert TestClient(client.app, base_url="http://127.0.0.1").post("/api/export").status_code == 401


def test_ten_thousand_recordings_export_whole(tmp_path: Path) -> None:
    # The size the issue asks for (the app's memory over it: scripts/bench_export.py).
    store, registry = open_both(tmp_path)
    registry.create_household("h1", "The Parks")
    add_member(registry, "h1", "ana@example.org", "ana", "correct horse")
    audio = bytes(range(256)) * 32  # 0.26 s each, and not all zeros
    now = datetime.now(UTC)
    for _ in range(10_000 // 50):  # the store's own batches, as group commit writes them: seconds, not minutes
        clips = [
            make_clip(household_id="h1", review_allowed=False, consent_version=1, capture_started_at=now)
            for _ in range(50)
        ]
        assert store.save_many([(clip, audio) for clip in clips]) == [True] * 50
    with TestClient(create_app(registry), base_url="http://127.0.0.1") as client:
        archive, started = download(signed_in(client.app, "ana@example.org"))
    assert started["recordings"] == 10_000
    wavs = [name for name in archive.namelist() if name.startswith("recordings/")]
    assert len(wavs) == len(set(wavs)) == 10_000
    assert len(archive.read("recordings.jsonl").splitlines()) == 10_000
    assert archive.read(wavs[-1])[44:] == audio


def test_a_download_link_expires_after_its_minutes(world: tuple[SqlClipStore, Registry, TestClient]) -> None:
    _, registry, _ = world
    now = [1000.0]
    exports = export.Exports(clock=lambda: now[0])
    late = exports.start(registry, "h1", "ana@example.org", "test")
    in_time = exports.start(registry, "h1", "ana@example.org", "test")
    now[0] += export.LINK_SECONDS - 1
    assert exports.take(in_time.export_id, "h1") is in_time
    now[0] += 2  # past its life, though its progress is still kept for the page's poll
    with pytest.raises(NotFound, match="used or has expired"):
        exports.take(late.export_id, "h1")
    assert exports.progress(late.export_id, "h1")["done"] is False

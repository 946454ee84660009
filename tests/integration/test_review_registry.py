"""Consent registry, review pool, reviewers, deletion, retention and the audit chain."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pipeline.store import SqlClipStore, StartClaim
from review_opt_out import audit
from review_opt_out.auth import hash_password
from review_opt_out.cli import apply_retention
from review_opt_out.errors import NotFound
from review_opt_out.registry import Channel, Registry
from tests.conftest import REPO
from tests.review_helpers import capture, open_both


def test_a_new_household_starts_without_review_consent(tmp_path: Path, database: str | None) -> None:
    _, registry = open_both(tmp_path, database)
    household = registry.create_household("h1", "The Parks")
    assert (household.review_allowed, household.consent_version) == (False, 1)
    [signup] = registry.history("h1")
    assert (signup.channel, signup.review_allowed) == ("signup", False)
    assert registry.unpublished_consent()[0][:2] == ("h1", 1)


def test_only_eligible_clips_enter_the_pool(tmp_path: Path, database: str | None) -> None:
    store, registry = open_both(tmp_path, database)
    registry.create_household("h1", "The Parks")
    household = registry.set_consent("h1", True, "member-1", Channel.APP)  # version 2
    good = capture(store, "h1", True, household.consent_version)
    capture(store, "h1", False, household.consent_version)  # device tag said no
    capture(store, "h1", True, household.consent_version - 1)  # tagged under an older consent
    capture(store, "h1", True, 0)  # the device had never seen consent
    assert registry.sample(1.0) == 1
    assert registry.pool_households() == {"h1": 1}
    reviewer = registry.add_reviewer("rita", hash_password("pw"))
    pseudonym = registry.next_assignment(reviewer)
    assert pseudonym is not None and str(good) not in pseudonym
    assert registry.reviewer_audio(reviewer, pseudonym)[:4] == b"RIFF"
    assert registry.sample(1.0) == 0  # each clip is considered once


def test_the_sampler_reads_forward_in_small_batches(tmp_path: Path, database: str | None) -> None:
    store, registry = open_both(tmp_path, database)
    registry.create_household("h1", "The Parks")
    household = registry.set_consent("h1", True, "member-1", Channel.APP)
    first = [capture(store, "h1", True, household.consent_version) for _ in range(5)]
    assert registry.sample(1.0, limit=3, batch=2) == 3  # the limit holds across batches
    assert registry.sample(1.0, batch=2) == 2
    later = capture(store, "h1", True, household.consent_version)
    assert registry.sample(1.0, batch=2) == 1  # only what came after the mark is read
    considered = {row[0] for row in registry.db.execute("SELECT clip_id FROM review_considered")}
    assert considered == {str(c) for c in [*first, later]}
    [(mark,)] = registry.db.execute("SELECT last_rowid FROM sampler_mark").fetchall()
    assert mark == registry.db.execute(f"SELECT max({registry.db.clip_order}) FROM clips").fetchone()[0]  # noqa: S608
    # Each batch was its own transaction, with its own audit entry.
    admits = registry.db.execute("SELECT count(*) FROM audit_log WHERE action = 'pool.admit'").fetchone()[0]
    assert admits == 4


def test_clips_saved_after_everything_was_deleted_are_still_considered(tmp_path: Path, database: str | None) -> None:
    # SQLite reuses the ids of deleted newest rows: the sampler's mark must not skip them.
    store, registry = open_both(tmp_path, database)
    registry.create_household("h1", "The Parks")
    version = registry.set_consent("h1", True, "member-1", Channel.APP).consent_version
    for _ in range(5):
        capture(store, "h1", True, version)
    assert registry.sample(1.0) == 5
    assert registry.delete("h1", "member-1") == 5  # "Delete all my recordings"
    again = [capture(store, "h1", True, version) for _ in range(2)]
    assert registry.sample(1.0) == 2, "new clips are considered, whatever ids they got"
    pooled = {row[0] for row in registry.db.execute("SELECT clip_id FROM review_pool")}
    assert pooled == {str(c) for c in again}


def test_opt_out_purges_the_pool_and_revokes_assignments_in_one_step(tmp_path: Path, database: str | None) -> None:
    store, registry = open_both(tmp_path, database)
    registry.create_household("h1", "The Parks")
    version = registry.set_consent("h1", True, "m", Channel.APP).consent_version
    for _ in range(3):
        capture(store, "h1", True, version)
    registry.sample(1.0)
    reviewer = registry.add_reviewer("rita", hash_password("pw"))
    pseudonym = registry.next_assignment(reviewer)
    assert pseudonym is not None

    registry.set_consent("h1", False, "m", Channel.VOICE)
    assert registry.pool_households() == {}
    with pytest.raises(NotFound):
        registry.reviewer_audio(reviewer, pseudonym)
    with pytest.raises(NotFound):
        registry.submit(reviewer, pseudonym, "corrected")
    status = registry.db.execute("SELECT status FROM assignments WHERE pseudonym = ?", (pseudonym,)).fetchone()[0]
    assert status == "revoked"
    [change] = [e for e in registry.db.execute("SELECT action, detail FROM audit_log") if e[0] == "consent.set"][-1:]
    assert '"purged_from_pool": 3' in change[1] and '"revoked_assignments": 1' in change[1]

    # Opting back in never brings the old clips back.
    registry.set_consent("h1", True, "m", Channel.APP)
    registry.sample(1.0)
    assert registry.pool_households() == {}
    assert registry.next_assignment(reviewer) is None


def test_reviewers_cannot_fetch_what_is_not_theirs(tmp_path: Path, database: str | None) -> None:
    store, registry = open_both(tmp_path, database)
    registry.create_household("h1", "The Parks")
    version = registry.set_consent("h1", True, "m", Channel.APP).consent_version
    capture(store, "h1", True, version)
    registry.sample(1.0)
    rita = registry.add_reviewer("rita", hash_password("pw"))
    sam = registry.add_reviewer("sam", hash_password("pw"))
    pseudonym = registry.next_assignment(rita)
    assert pseudonym is not None
    for who, what in ((sam, pseudonym), (rita, "guessed-id"), (rita, pseudonym[:-1] + "x")):
        with pytest.raises(NotFound):
            registry.reviewer_audio(who, what)
    refused = registry.db.execute("SELECT COUNT(*) FROM audit_log WHERE action = 'review.fetch_refused'").fetchone()
    assert refused[0] == 3


def test_deleting_removes_audio_row_pool_and_assignment(tmp_path: Path, database: str | None) -> None:
    store, registry = open_both(tmp_path, database)
    registry.create_household("h1", "The Parks")
    version = registry.set_consent("h1", True, "m", Channel.APP).consent_version
    clip = capture(store, "h1", True, version)
    registry.sample(1.0)
    reviewer = registry.add_reviewer("rita", hash_password("pw"))
    assert registry.next_assignment(reviewer) is not None
    assert registry.recording_audio("h1", str(clip))[:4] == b"RIFF"
    assert registry.delete("h1", "m", clip_id=str(clip)) == 1
    assert store.get(clip) is None and store.audio(clip) is None
    assert registry.db.execute("SELECT COUNT(*) FROM clip_audio").fetchone()[0] == 0
    with pytest.raises(NotFound):
        registry.recording_audio("h1", str(clip))
    assert registry.pool_households() == {}
    assert registry.db.execute("SELECT COUNT(*) FROM assignments").fetchone()[0] == 0
    assert registry.recordings("h1") == []


def test_retention_and_dont_keep(tmp_path: Path, database: str | None) -> None:
    store, registry = open_both(tmp_path, database)
    registry.create_household("h1", "The Parks")
    registry.create_household("h2", "The Lees")
    old = capture(store, "h1", False, 1, age_days=100)
    recent = capture(store, "h1", False, 1, age_days=10)
    capture(store, "h2", False, 1)
    assert apply_retention(registry) == 0  # default: keep until deleted
    registry.set_retention("h1", "3_months", "m")  # takes effect at once for what is older
    assert store.get(old) is None and store.get(recent) is not None
    registry.create_household("h3", "The Kims")
    registry.set_retention("h3", "3_months", "m")
    expiring = capture(store, "h3", False, 1, age_days=100)  # as if received 100 days ago
    assert apply_retention(registry) == 1 and store.get(expiring) is None
    assert apply_retention(registry) == 0 and store.get(recent) is not None
    registry.set_keep_recordings("h2", False, "m")
    assert apply_retention(registry) == 1
    assert registry.recordings("h2") == []


def test_a_shortened_retention_interrupted_midway_is_finished_by_the_next_run(
    tmp_path: Path, database: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, registry = open_both(tmp_path, database)
    registry.create_household("h1", "The Parks")
    old = [capture(store, "h1", False, 1, age_days=100 + n) for n in range(3)]
    # Another household already deletes after 3 months: the retention run's mark for that
    # choice is past h1's old clips, so only the pending mark can bring the run back to them.
    registry.create_household("h2", "The Lees")
    registry.set_retention("h2", "3_months", "m")
    assert apply_retention(registry) == 0
    recent = capture(store, "h1", False, 1, age_days=10)
    real_delete, calls = registry.delete, []

    def dies_after_one(*args: Any, **kwargs: Any) -> int:
        if calls:
            raise KeyboardInterrupt  # the process stops between two clips
        calls.append(args)
        return real_delete(*args, **kwargs)

    monkeypatch.setattr(registry, "delete", dies_after_one)
    with pytest.raises(KeyboardInterrupt):
        registry.set_retention("h1", "3_months", "m")
    monkeypatch.setattr(registry, "delete", real_delete)
    assert sum(store.get(clip) is not None for clip in old) == 2  # behind the marks, left over
    assert apply_retention(registry) == 2
    assert all(store.get(clip) is None for clip in old) and store.get(recent) is not None
    assert registry.db.execute("SELECT count(*) FROM retention_pending").fetchone()[0] == 0


def test_a_retention_shortened_meanwhile_by_another_process_stays_pending(
    tmp_path: Path, database: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, registry = open_both(tmp_path, database)
    registry.create_household("h2", "The Lees")
    registry.set_retention("h2", "3_months", "m")
    assert apply_retention(registry) == 0  # the 3-month choice's mark is now
    registry.create_household("h1", "The Parks")
    registry.set_retention("h1", "18_months", "m")
    very_old = capture(store, "h1", False, 1, age_days=600)
    old = capture(store, "h1", False, 1, age_days=100)
    with registry.transaction() as db:  # an 18-month expiry of h1 that died earlier
        db.execute("INSERT INTO retention_pending VALUES ('h1')")
    real_delete = registry.delete

    def another_process_shortens_it(*args: Any, **kwargs: Any) -> int:
        # While this run expires h1 at 18 months, another process sets 3 months; its own
        # expiry of h1 dies before it deletes anything.
        with registry.transaction() as db:
            db.execute("UPDATE households SET retention_days = 90 WHERE household_id = 'h1'")
            db.execute("INSERT INTO retention_pending VALUES ('h1') ON CONFLICT DO NOTHING")
        return real_delete(*args, **kwargs)

    monkeypatch.setattr(registry, "delete", another_process_shortens_it)
    assert apply_retention(registry) == 1 and store.get(very_old) is None
    monkeypatch.setattr(registry, "delete", real_delete)
    assert store.get(old) is not None  # behind the 3-month mark: only the pending row brings it
    assert apply_retention(registry) == 1 and store.get(old) is None


def test_audit_chain_detects_tampering(tmp_path: Path, database: str | None) -> None:
    _, registry = open_both(tmp_path, database)
    registry.create_household("h1", "The Parks")
    registry.set_consent("h1", True, "m", Channel.APP)
    registry.set_consent("h1", False, "m", Channel.APP)
    assert audit.verify(registry.db).ok
    with pytest.raises(registry.db.errors, match="append-only"), registry.transaction() as db:
        db.execute("UPDATE audit_log SET actor = 'someone else' WHERE seq = 2")
    with pytest.raises(registry.db.errors, match="append-only"), registry.transaction() as db:
        db.execute("DELETE FROM audit_log WHERE seq = 3")
    where = ["--data-dir", str(tmp_path)]
    env = {**os.environ, "EARMARK_DATABASE": database or "sqlite"}  # never a password on a command line
    ok = subprocess.run(
        [sys.executable, "-m", "review_opt_out.cli", *where, "audit", "verify"],
        cwd=REPO, capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip
    assert ok.returncode == 0 and "chain intact" in ok.stdout

    # Someone with the database's owner rights drops the trigger and rewrites history.
    trigger = "audit_log_no_update" if database is None else "audit_log_no_change ON audit_log"
    with registry.transaction() as db:
        db.execute(f"DROP TRIGGER {trigger}")
        db.execute("UPDATE audit_log SET detail = replace(detail, 'false', 'true') WHERE seq = 3")
    result = audit.verify(registry.db)
    assert (result.ok, result.first_bad_seq) == (False, 3)
    bad = subprocess.run(
        [sys.executable, "-m", "review_opt_out.cli", *where, "audit", "verify"],
        cwd=REPO, capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip
    assert bad.returncode == 1 and "entry 3" in bad.stderr


def test_registry_survives_reopen(tmp_path: Path, database: str | None) -> None:
    _, registry = open_both(tmp_path, database)
    registry.create_household("h1", "The Parks")
    registry.set_consent("h1", True, "m", Channel.APP)
    registry.close()
    again = Registry(tmp_path, database=database)
    assert again.household("h1").review_allowed is True
    assert audit.verify(again.db).ok


def test_deletion_survives_a_crash_and_ignores_a_wrong_device_clock(tmp_path: Path, database: str | None) -> None:
    store, registry = open_both(tmp_path, database)
    registry.create_household("h1", "The Parks")
    # A device whose clock was never set claims 1970; the cloud received it today.
    unset_clock = capture(store, "h1", False, 0, age_days=20_000)
    with registry.transaction() as db:
        received = db.execute(
            "UPDATE clips SET received_at = ? WHERE utterance_id = ?",
            (datetime.now(UTC).isoformat(timespec="microseconds"), str(unset_clock)),
        )
        assert received.rowcount == 1
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    assert registry.delete("h1", "ana", since=today) == 1  # "delete everything I said today"
    # An earlier release (audio as files) crashed between a deletion's commit and its
    # unlink: the file goes at the next open.
    audio = tmp_path / "clips" / "h1" / "leftover.wav"
    audio.parent.mkdir(parents=True)
    audio.write_bytes(b"RIFF")
    with registry.transaction() as db:
        db.execute("INSERT INTO audio_deletions VALUES (?)", (str(audio.relative_to(tmp_path)),))
    registry.close()
    Registry(tmp_path, database=database).close()
    assert not audio.exists()
    assert Registry(tmp_path, database=database).db.execute("SELECT COUNT(*) FROM audio_deletions").fetchone()[0] == 0


def test_dont_keep_chosen_before_the_upgrade_is_honoured(tmp_path: Path) -> None:
    import sqlite3

    # As the first release left it: the choice only in households (no storage_policy), and
    # no record of the one-off migration (no migrations table).
    old = sqlite3.connect(tmp_path / "earmark.sqlite3")
    old.executescript((REPO / "tests/fixtures/older_sqlite/f04b7e7.sql").read_text())
    old.execute("INSERT INTO households VALUES ('h1', 'The Parks', 0, 1, NULL, 0, '2026-11-27T07:00:00+00:00')")
    old.execute("INSERT INTO devices VALUES ('kitchen-1', 'h1')")
    old.commit()
    old.close()
    Registry(tmp_path).close()
    store = SqlClipStore(tmp_path)
    assert store.admit_start(start_of("kitchen-1", "h1", uuid.uuid4())).keep_audio is False
    store.close()


def test_spoken_deletions_reach_only_the_speakers_own_recent_requests(tmp_path: Path, database: str | None) -> None:
    from datetime import timedelta

    from tests.review_helpers import make_clip

    store, registry = open_both(tmp_path, database)
    registry.create_household("h1", "The Parks", time_zone="Asia/Seoul")
    registry.create_household("h2", "Next door")
    store.enroll("kitchen-1", "h1")
    store.enroll("hall-2", "h1")
    store.enroll("flat-9", "h2")
    now = datetime.now(UTC)

    def said(device: str, household: str, minutes_ago: float, reason: str = "silence") -> uuid.UUID:
        at = now - timedelta(minutes=minutes_ago)
        clip = make_clip(device_id=device, household_id=household, received_at=at, capture_started_at=at)
        store.save(replace(clip, end_reason=reason), bytes(3200))
        return clip.utterance_id

    old = said("kitchen-1", "h1", 30)  # too long ago to be "what I just said"
    request = said("kitchen-1", "h1", 1.0)
    false_wake = said("kitchen-1", "h1", 0.5, reason="no_speech")  # a false wake is no request
    other_speaker = said("hall-2", "h1", 0.2)
    neighbour = said("flat-9", "h2", 0.1)
    command = uuid.uuid4()  # its own clip not stored yet: the command overtook its save
    assert registry.delete_spoken("kitchen-1", str(command), today=False) == 2
    assert store.get(request) is None
    assert all(store.get(u) is not None for u in (old, other_speaker, neighbour))
    assert registry.delete_spoken("kitchen-1", str(command), today=False) == 0  # delivered twice: nothing more
    assert store.get(old) is not None
    late = make_clip(utterance_id=command, device_id="kitchen-1", household_id="h1")
    assert store.save(late, bytes(3200)) and store.get(command) is None  # the tombstone holds
    assert store.admit_start(start_of("kitchen-1", "h1", command)).forgotten  # and a resent start is a duplicate
    assert not store.admit_start(start_of("hall-2", "h1", command)).forgotten  # keyed by device: no veto on others

    today = uuid.uuid4()
    on_its_way = make_clip(device_id="hall-2", household_id="h1", received_at=now)  # another speaker, mid-save
    from zoneinfo import ZoneInfo

    midnight = datetime.now(ZoneInfo("Asia/Seoul")).replace(hour=0, minute=0, second=0, microsecond=0)
    left_today = [u for u in (old, false_wake, other_speaker) if store.get(u).received_at >= midnight]  # type: ignore[union-attr]
    assert registry.delete_spoken("kitchen-1", str(today), today=True) == len(left_today) + 1  # and the command
    assert store.save(on_its_way, bytes(3200)) and store.get(on_its_way.utterance_id) is None
    assert store.get(neighbour) is not None  # another household is never touched
    assert [r[0] for r in registry.db.execute("SELECT actor FROM audit_log WHERE action = 'recordings.delete'")] == [
        "voice:kitchen-1",
        "voice:kitchen-1",
    ]
    with pytest.raises(NotFound):
        registry.delete_spoken("stranger", str(uuid.uuid4()), today=True)


def start_of(device_id: str, household_id: str, utterance_id: uuid.UUID) -> StartClaim:
    """A start as a device sends it, for the store's admission."""
    return StartClaim(utterance_id, device_id, household_id, False, 1, datetime.now(UTC))


def test_schema_versions_are_never_edited_once_written() -> None:
    # Each version is applied once per database, on either engine: a schema change must come
    # as a new file, never as an edit of one that databases already have.
    import hashlib

    from pipeline import clip_schema
    from review_opt_out import registry_schema

    def digests(versions: list[str]) -> list[str]:
        return [hashlib.sha256(version.encode()).hexdigest()[:16] for version in versions]

    assert digests(clip_schema.POSTGRESQL_VERSIONS) == ["6f84a494739659d1", "2d4164547fb611ed"]
    assert digests(registry_schema.POSTGRESQL_VERSIONS) == [
        "7e5eb0387f013ba7", "762a9ce4089aca82", "ca7e4bf6b03d30c9", "61077b8743332e02",
        "4ef73324ed929100",
    ]  # fmt: skip
    assert digests(clip_schema.SQLITE_VERSIONS) == ["60b22cb9d0779140", "b7a4ca119f1e7e0a"]
    assert digests(registry_schema.SQLITE_VERSIONS) == [
        "71e37518beb766fa", "633cb1be774ccf92", "60d9cbd655c3b214", "09aac45176ad9746",
        "0a01914f24f590e2",
    ]  # fmt: skip


def test_both_databases_have_one_schema(tmp_path: Path) -> None:
    # The PostgreSQL versions spell the SQLite schema: same tables (earmark_schema too), same
    # columns in the same order with the same NOT NULLs, same indexes (PostgreSQL adds
    # clip_seq, its rowid).
    from tests.postgres import fresh_database

    _, lite = open_both(tmp_path / "sqlite")
    tables = [r[0] for r in lite.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    sqlite_schema = {
        table: [(r[1], bool(r[3]) or bool(r[5])) for r in lite.db.execute(f"PRAGMA table_info({table})")]
        for table in tables
    }
    sqlite_indexes = {
        r[0] for r in lite.db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
    }
    with fresh_database() as url:
        _, pg = open_both(tmp_path / "postgresql", url)
        pg_schema: dict[str, list[tuple[str, bool]]] = {}
        for table, column, nullable in pg.db.execute(
            "SELECT table_name, column_name, is_nullable FROM information_schema.columns "
            "WHERE table_schema = 'public' ORDER BY table_name, ordinal_position"
        ):
            pg_schema.setdefault(table, []).append((column, nullable == "NO"))
        pg_indexes = {
            r[0]
            for r in pg.db.execute(
                "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' AND indexname NOT LIKE '%_pkey' "
                "AND indexname NOT LIKE '%_key'"
            )
        }
        pg.close()
    assert [c for c in pg_schema.pop("clips") if c[0] != "clip_seq"] == sqlite_schema.pop("clips")
    assert pg_schema == sqlite_schema
    assert pg_indexes == sqlite_indexes


def test_the_background_sampler_catches_up_within_one_round(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from review_opt_out import cli

    store, registry = open_both(tmp_path)
    registry.create_household("h1", "The Parks")
    for _ in range(25):
        capture(store, "h1", False, 1)
    monkeypatch.setattr(cli, "SAMPLER_PASS_CLIPS", 10)  # a backlog of two and a half passes
    stop = threading.Event()
    cli._background(registry, 0.0, 0.01, stop, stop.set)  # one round: the tally stops it
    assert sum(registry.verdicts().values()) == 25


def test_an_older_registry_learns_which_addresses_nobody_proved(tmp_path: Path, database: str | None) -> None:
    # A registry from before schema version 3: members who joined from an invitation link
    # become unverified (the audit log says who did), the operator's members stay verified,
    # and reviewers keep their passwords.
    from review_opt_out import members
    from review_opt_out.auth import add_member, sign_in

    _, registry = open_both(tmp_path, database)
    registry.create_household("h1", "H1")
    ana = add_member(registry, "h1", "ana@example.org", "Ana", "correct horse")
    cy = members.accept(registry, members.invite(registry, "h1", "cy@example.org", "Cy", members.Role.MEMBER, ana), "x")
    registry.add_reviewer("rita", hash_password("reviewer pw"))
    with registry.transaction() as db:  # back to version 2: one account per address, no status
        for column in ("created_by", "activation_hash", "activation_expires_at"):
            db.execute(f"ALTER TABLE reviewers DROP COLUMN {column}")
        db.execute("ALTER TABLE members RENAME TO members_v3")
        db.execute(
            "CREATE TABLE members (member_id TEXT PRIMARY KEY, household_id TEXT NOT NULL REFERENCES households "
            "(household_id), email TEXT NOT NULL UNIQUE, display_name TEXT NOT NULL, password_hash TEXT NOT NULL, "
            "role TEXT NOT NULL DEFAULT 'owner' CHECK (role IN ('owner', 'member')))"
        )
        db.execute(
            "INSERT INTO members SELECT member_id, household_id, email, display_name, password_hash, role "
            "FROM members_v3"
        )
        db.execute("DROP TABLE members_v3")
        db.execute("UPDATE earmark_schema SET version = 2 WHERE component = 'registry'")
    registry.close()
    registry = Registry(tmp_path, database=database)
    statuses = dict(registry.db.execute("SELECT member_id, email_status FROM members").fetchall())
    assert statuses == {ana: "verified", cy: "unverified"}
    # Version 3's point: another household may now hold an account for Cy's address too.
    registry.create_household("h2", "H2")
    members.accept(registry, members.invite(registry, "h2", "cy@example.org", "Cy", members.Role.MEMBER, ana), "y")
    assert sign_in(registry, "reviewer", "rita", "reviewer pw") is not None
    assert [(r["name"], r["activated"], r["created_by"]) for r in registry.reviewers()] == [("rita", True, None)]
    registry.close()

"""The clip store: consent tag NOT NULL, atomic audio + row, recovery after a crash."""

from __future__ import annotations

import io
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
import uuid
import wave
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import ClipRejected
from pipeline.store import SqlClipStore
from tests.conftest import REPO
from tests.review_helpers import make_clip


def test_saved_clip_reads_back_with_its_tag_and_audio(tmp_path: Path, database: str | None) -> None:
    store = SqlClipStore(tmp_path, database=database)
    clip = make_clip(review_allowed=False, consent_version=0)
    store.save(clip, bytes(32000))
    got = store.get(clip.utterance_id)
    assert got is not None and got.review_allowed is False and got.consent_version == 0
    assert got.duration_seconds == 1.0 and got.audio_bytes == 32000
    with wave.open(io.BytesIO(store.audio(clip.utterance_id) or b"")) as w:
        assert w.getnframes() == 16000 and w.getframerate() == 16000


@pytest.mark.parametrize(
    "changes",
    [
        {"review_allowed": None},
        {"review_allowed": "yes"},
        {"consent_version": None},
        {"consent_version": -1},
        {"household_id": "../etc"},
    ],
)
def test_a_clip_without_a_valid_tag_is_never_stored(
    tmp_path: Path, changes: dict[str, object], database: str | None
) -> None:
    store = SqlClipStore(tmp_path, database=database)
    with pytest.raises(ClipRejected):
        store.save(make_clip(**changes), bytes(3200))
    assert store.count() == 0
    assert store._db.execute("SELECT COUNT(*) FROM clip_audio").fetchone()[0] == 0


def test_the_database_itself_refuses_a_row_without_a_tag(tmp_path: Path, database: str | None) -> None:
    store = SqlClipStore(tmp_path, database=database)
    db = store._db  # as any other client of the database would write, bypassing the store's checks
    with pytest.raises(db.errors, match=r"NOT NULL|not-null"), db.writing():
        db.execute(
            "INSERT INTO clips (utterance_id, device_id, household_id, capture_started_at, received_at, stored_at, "
            "duration_seconds, transcript, end_reason, status, wake_word, firmware_version, consent_version, "
            "audio_bytes) VALUES ('u', 'd', 'h', 't', 't', 't', 1, '', 'silence', 'complete', 'alexa', '0', 1, 2)"
        )


@pytest.mark.parametrize("point", ["row_inserted", "committed"])
def test_a_crash_never_leaves_audio_without_a_row_nor_a_row_without_audio(
    tmp_path: Path, point: str, database: str | None
) -> None:
    # A child process dies (os._exit, no cleanup) at a point inside save(): row and audio
    # are one commit, so there is both or neither, with nothing to reconcile.
    clip = make_clip()
    script = textwrap.dedent(
        f"""
        import os, sys, uuid
        sys.path.insert(0, {str(REPO)!r})
        from pathlib import Path
        from pipeline.store import SqlClipStore
        from tests.review_helpers import make_clip
        def crash(name):
            if name == {point!r}:
                os._exit(17)
        store = SqlClipStore(Path({str(tmp_path)!r}), database={database!r}, crash_hook=crash)
        store.save(make_clip(utterance_id=uuid.UUID({str(clip.utterance_id)!r})), bytes(3200))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, timeout=60, check=False)
    assert done.returncode == 17
    store = SqlClipStore(tmp_path, database=database)
    saved = store.get(clip.utterance_id)
    audio_rows = store._db.execute("SELECT COUNT(*) FROM clip_audio").fetchone()[0]
    if point == "committed":
        assert saved is not None and saved.audio_bytes == 3200 and audio_rows == 1
        assert len(store.audio(clip.utterance_id) or b"") == 44 + 3200
    else:
        assert store.count() == 0 and audio_rows == 0
    again = make_clip()
    assert store.save(again, bytes(3200))
    assert store.audio(again.utterance_id) is not None
    assert not (tmp_path / "clips").exists()  # nothing of a clip is a file


def test_a_redelivered_utterance_never_touches_what_is_stored(tmp_path: Path, database: str | None) -> None:
    store = SqlClipStore(tmp_path, database=database)
    clip = make_clip(transcript="first")
    assert store.save(clip, b"\x01\x00" * 1600)
    original = store.audio(clip.utterance_id)
    assert original is not None
    store.close()
    store = SqlClipStore(tmp_path, database=database)  # after a restart: the "already stored" check is the database
    assert store.save(clip, bytes(6400)) is False
    assert store.save(make_clip(utterance_id=clip.utterance_id, transcript="second"), None) is False
    again = store.get(clip.utterance_id)
    assert again is not None and again.transcript == "first" and store.audio(clip.utterance_id) == original
    assert store.count() == 1


def test_a_clip_without_audio_keeps_its_record_and_tag(tmp_path: Path, database: str | None) -> None:
    store = SqlClipStore(tmp_path, database=database)
    clip = make_clip(review_allowed=True, consent_version=4, transcript="")
    assert store.save(clip, None)
    got = store.get(clip.utterance_id)
    assert got is not None and got.audio_bytes is None and got.duration_seconds == 0.0
    assert (got.review_allowed, got.consent_version) == (True, 4)
    assert store.audio(clip.utterance_id) is None


def test_data_at_rest_is_private_from_the_start(tmp_path: Path) -> None:
    old = os.umask(0o022)  # a typical login umask: files would be world-readable
    try:
        store = SqlClipStore(tmp_path / "cloud")
        clip = make_clip()
        store.save(clip, bytes(3200))
        saved = store.get(clip.utterance_id)
    finally:
        os.umask(old)
    assert saved is not None and saved.audio_bytes is not None
    cloud = tmp_path / "cloud"
    assert stat.S_IMODE(cloud.stat().st_mode) == 0o700
    for path in cloud.glob("earmark.sqlite3*"):  # the audio is in the database
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert len(list(cloud.glob("earmark.sqlite3*"))) >= 2  # the database and its WAL
    assert store._db.execute("PRAGMA secure_delete").fetchone()[0] == 1


def test_a_store_from_before_receipt_times_is_upgraded(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "earmark.sqlite3")
    db.executescript(
        """
        CREATE TABLE clips (utterance_id TEXT PRIMARY KEY, device_id TEXT NOT NULL, household_id TEXT NOT NULL,
            capture_started_at TEXT NOT NULL, stored_at TEXT NOT NULL, duration_seconds REAL NOT NULL,
            transcript TEXT NOT NULL, end_reason TEXT NOT NULL, status TEXT NOT NULL,
            missing_chunks INTEGER NOT NULL DEFAULT 0, wake_word TEXT NOT NULL, firmware_version TEXT NOT NULL,
            review_allowed INTEGER NOT NULL, consent_version INTEGER NOT NULL, audio_path TEXT NOT NULL);
        INSERT INTO clips VALUES ('6f1c6b1e-0a5b-4a59-9a3e-2f0b7c1d0e11', 'kitchen-1', 'h-42',
            '9999-01-01T00:00:00.000000+00:00', '2026-01-01T00:00:00.000000+00:00', 1.0, 'hi', 'silence',
            'complete', 0, 'alexa', '0.1.0', 1, 2, 'clips/h-42/x.wav');
        """
    )
    db.close()
    store = SqlClipStore(tmp_path)
    got = store.get(uuid.UUID("6f1c6b1e-0a5b-4a59-9a3e-2f0b7c1d0e11"))
    # The device's far-future capture time stays what it claimed; retention now counts from receipt.
    assert got is not None and got.received_at.year == 2026 and got.capture_started_at.year == 9999
    assert (got.review_allowed, got.consent_version, got.review_blocked) == (True, 2, None)


def test_enrollment(tmp_path: Path, database: str | None) -> None:
    store = SqlClipStore(tmp_path, database=database)
    assert store.device_household("kitchen-1") is None
    store.enroll("kitchen-1", "h-42")
    assert store.device_household("kitchen-1") == "h-42"
    with pytest.raises(ClipRejected):
        store.enroll("bad/id", "h-42")


def test_a_store_outlives_a_dropped_postgresql_connection(tmp_path: Path) -> None:
    import psycopg

    from tests.postgres import fresh_database

    with fresh_database() as url:
        store = SqlClipStore(tmp_path, database=url)
        assert store.save(make_clip(), bytes(3200))
        # The server ends every session of this database (a restart, a failover, an admin).
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        after = make_clip()
        assert store.save(after, bytes(3200))  # its transaction found the loss first and opened again
        assert store.get(after.utterance_id) is not None and store.count() == 2
        store.close()


def test_a_writer_waits_its_turn_past_a_statement_timeout_and_survives_a_cancelled_wait(tmp_path: Path) -> None:
    import threading

    import psycopg

    from pipeline.database import WRITER_LOCK_KEY
    from tests.postgres import fresh_database

    with fresh_database() as url:
        # A role or URL with a short statement timeout, as an operator may set.
        store = SqlClipStore(tmp_path, database=url + "?options=-c%20statement_timeout%3D200")
        with psycopg.connect(url, autocommit=True) as other:

            def save_in_background(clip: object, outcome: list[object]) -> threading.Thread:
                def run() -> None:
                    try:
                        outcome.append(store.save(clip, bytes(3200)))  # type: ignore[arg-type]
                    except Exception as err:  # the outcome is what is asserted
                        outcome.append(err)

                thread = threading.Thread(target=run)
                thread.start()
                return thread

            def waiting_pid() -> int:
                for _ in range(500):
                    row = other.execute(
                        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                        "AND wait_event_type = 'Lock' AND wait_event = 'advisory'"
                    ).fetchone()
                    if row is not None:
                        return int(row[0])
                    threading.Event().wait(0.01)
                raise AssertionError("the save never waited for the writer lock")

            # Another writer holds the lock for longer than the timeout: the save waits its turn.
            other.execute("BEGIN")
            other.execute("SELECT pg_advisory_xact_lock(%s)", (WRITER_LOCK_KEY,))
            outcome: list[object] = []
            thread = save_in_background(make_clip(), outcome)
            waiting_pid()
            threading.Event().wait(0.5)
            other.execute("COMMIT")
            thread.join(timeout=30)
            assert outcome == [True]

            # A wait an operator cancels fails that save, and the next one still works.
            other.execute("BEGIN")
            other.execute("SELECT pg_advisory_xact_lock(%s)", (WRITER_LOCK_KEY,))
            outcome = []
            thread = save_in_background(make_clip(), outcome)
            other.execute("SELECT pg_cancel_backend(%s)", (waiting_pid(),))
            thread.join(timeout=30)
            other.execute("COMMIT")
            assert len(outcome) == 1 and isinstance(outcome[0], psycopg.errors.QueryCanceled)
            assert store.save(make_clip(), bytes(3200)) and store.count() == 2
        store.close()


def test_a_data_directory_keeps_to_the_database_it_began_with(tmp_path: Path) -> None:
    from pipeline.errors import DatabaseUnavailable
    from tests.postgres import fresh_database

    SqlClipStore(tmp_path / "a").close()  # SQLite
    with fresh_database() as url:
        with pytest.raises(DatabaseUnavailable, match="keeps its rows in sqlite, not PostgreSQL database earmark_"):
            SqlClipStore(tmp_path / "a", database=url)
        # A database that could not be opened is not recorded: the directory is still free.
        with pytest.raises(DatabaseUnavailable, match="cannot open"):
            SqlClipStore(tmp_path / "b", database="postgresql://nobody:wrong@127.0.0.1:1/earmark")
        SqlClipStore(tmp_path / "b", database=url).close()
        with pytest.raises(DatabaseUnavailable, match="keeps its rows in PostgreSQL database earmark_test_"):
            SqlClipStore(tmp_path / "b")


def test_a_save_whose_commit_answer_was_lost_keeps_its_audio(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg

    from tests.postgres import fresh_database

    with fresh_database() as url:
        store = SqlClipStore(tmp_path, database=url)
        conn = store._db._conn
        real_execute = conn.execute

        def commit_then_lose_the_answer(query: Any, *args: Any, **kwargs: Any) -> Any:
            done = real_execute(query, *args, **kwargs)
            if query == "COMMIT":  # the server committed; the connection died before saying so
                raise psycopg.OperationalError("server closed the connection unexpectedly")
            return done

        monkeypatch.setattr(conn, "execute", commit_then_lose_the_answer)
        clip = make_clip()
        with pytest.raises(psycopg.OperationalError):
            store.save(clip, bytes(3200))
        monkeypatch.setattr(conn, "execute", real_execute)
        assert store.save(clip, bytes(3200)) is False  # the device's resend: stored already
        saved = store.get(clip.utterance_id)  # and its audio with it: one commit
        assert (
            saved is not None and saved.audio_bytes == 3200 and len(store.audio(clip.utterance_id) or b"") == 44 + 3200
        )
        store.close()


def _old_wav(path: Path, pcm: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(pcm)


def test_a_file_backed_store_moves_its_audio_into_the_database(tmp_path: Path, database: str | None) -> None:
    # A data directory as the releases before this one left it: rows pointing at WAV files
    # under clips/, a save interrupted after its commit (its .part not yet renamed), one
    # interrupted before (no row), and a row whose file went missing.
    store = SqlClipStore(tmp_path, database=database)
    moved, interrupted, missing = make_clip(), make_clip(), make_clip()
    never_committed = uuid.uuid4()
    for clip in (moved, interrupted, missing):
        store.save(clip, None)
        with store._db.writing() as db:
            db.execute(
                "UPDATE clips SET audio_path = ?, audio_bytes = NULL WHERE utterance_id = ?",
                (f"clips/{clip.household_id}/{clip.utterance_id}.wav", str(clip.utterance_id)),
            )
    store.close()
    _old_wav(tmp_path / "clips" / moved.household_id / f"{moved.utterance_id}.wav", b"\x01\x00" * 800)
    _old_wav(tmp_path / "clips" / ".incoming" / f"{interrupted.utterance_id}.1a2b.part", b"\x02\x00" * 400)
    _old_wav(tmp_path / "clips" / ".incoming" / f"{never_committed}.3c4d.part", b"\x03\x00" * 400)

    store = SqlClipStore(tmp_path, database=database)
    assert (store.audio(moved.utterance_id) or b"")[44:] == b"\x01\x00" * 800
    assert (store.audio(interrupted.utterance_id) or b"")[44:] == b"\x02\x00" * 400
    assert store.audio(missing.utterance_id) is None
    got = {clip.utterance_id: store.get(clip.utterance_id) for clip in (moved, interrupted, missing)}
    assert [c.audio_bytes if c else -1 for c in got.values()] == [1600, 800, None]
    assert store._db.execute("SELECT COUNT(*) FROM clips WHERE audio_path IS NOT NULL").fetchone()[0] == 0
    assert store.count() == 3 and store.get(never_committed) is None
    assert not (tmp_path / "clips").exists()  # the move is done, and no file is left behind
    store.close()
    SqlClipStore(tmp_path, database=database).close()  # opening again moves nothing


def test_a_statement_read_part_way_never_makes_the_next_write_fail(tmp_path: Path) -> None:
    # CI, session 16: two clip saves failed with "database is locked" though every writer
    # queues on the writer lock. A statement left part-read keeps its connection in a read
    # transaction, and SQLite refuses to upgrade that stale snapshot at once, without its
    # busy wait. Results are read whole now, so no statement outlives `execute`.
    mine, other = SqlClipStore(tmp_path), SqlClipStore(tmp_path)
    for n in range(3):
        mine.enroll(f"d-{n}", "h-1")
    part_read = mine._db.execute("SELECT device_id FROM devices")
    assert part_read.fetchone() is not None  # two rows not read yet, the cursor still alive
    other.enroll("d-9", "h-1")  # another connection commits: the first one's snapshot is stale
    mine.enroll("d-10", "h-1")  # failed at once, before
    assert mine.device_household("d-10") == "h-1"
    mine.close()
    other.close()


def test_a_write_outside_a_write_transaction_is_refused(tmp_path: Path, database: str | None) -> None:
    # It would take the engine's write lock outside the writer lock every writer queues on.
    store = SqlClipStore(tmp_path, database=database)
    with pytest.raises(RuntimeError, match="a write outside writing"):
        store._db.execute("DELETE FROM devices")
    store.close()

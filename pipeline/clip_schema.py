"""The clip store's tables: where the database is, its engine, its schema and upgrades."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from pathlib import Path

from pipeline.database import (
    SQLITE,
    Database,
    WriterLock,
    connect_postgresql,
    database_name,
    is_postgresql,
    migrate_postgresql,
    postgresql_versions,
)
from pipeline.errors import DatabaseUnavailable
from pipeline.file_audio import move_file_audio

_LOGGER = logging.getLogger(__name__)

SCHEMA_VERSION = 5


_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS devices (
        device_id     TEXT PRIMARY KEY,
        household_id  TEXT NOT NULL
    )""",
    # What the clip store must honour for a household; the consent side writes it.
    """CREATE TABLE IF NOT EXISTS storage_policy (
        household_id  TEXT PRIMARY KEY,
        keep_audio    INTEGER NOT NULL CHECK (keep_audio IN (0, 1))
    )""",
    """CREATE TABLE IF NOT EXISTS clips (
        utterance_id        TEXT PRIMARY KEY,
        device_id           TEXT NOT NULL,
        household_id        TEXT NOT NULL,
        capture_started_at  TEXT NOT NULL,
        received_at         TEXT NOT NULL,
        stored_at           TEXT NOT NULL,
        duration_seconds    REAL NOT NULL,
        transcript          TEXT NOT NULL,
        end_reason          TEXT NOT NULL,
        status              TEXT NOT NULL CHECK (status IN ('complete', 'incomplete', 'timed_out', 'abandoned')),
        missing_chunks      INTEGER NOT NULL DEFAULT 0,
        wake_word           TEXT NOT NULL,
        firmware_version    TEXT NOT NULL,
        review_allowed      INTEGER NOT NULL CHECK (review_allowed IN (0, 1)),
        consent_version     INTEGER NOT NULL CHECK (consent_version >= 0),
        review_blocked      TEXT,
        audio_path          TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS clips_household ON clips (household_id, capture_started_at)",
    "CREATE INDEX IF NOT EXISTS clips_received ON clips (received_at)",
    # Utterances their household deleted before they were stored (a spoken "delete what I
    # just said" can overtake its own clip's save): such a clip is never written. Keyed by
    # device too, so no one can veto another device's clip by naming its id.
    """CREATE TABLE IF NOT EXISTS forgotten (
        utterance_id  TEXT NOT NULL,
        device_id     TEXT NOT NULL,
        forgotten_at  TEXT NOT NULL,
        PRIMARY KEY (utterance_id, device_id)
    )""",
    "CREATE INDEX IF NOT EXISTS forgotten_at ON forgotten (forgotten_at)",
    # "Delete everything I said today" covers requests still on their way (another
    # speaker's, a resent outbox): nothing received before this moment is stored any more.
    """CREATE TABLE IF NOT EXISTS forgotten_before (
        household_id   TEXT PRIMARY KEY,
        received_before TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS clips_device ON clips (device_id, received_at)",
    # Retention: a household's clips past its cutoff, found without reading the others.
    "CREATE INDEX IF NOT EXISTS clips_household_received ON clips (household_id, received_at)",
    # Every start any worker admitted, first come: the tag and receipt time an utterance
    # keeps for good, whichever worker stores it and however often it is sent again.
    """CREATE TABLE IF NOT EXISTS utterances (
        utterance_id        TEXT PRIMARY KEY,
        device_id           TEXT NOT NULL,
        household_id        TEXT NOT NULL,
        review_allowed      INTEGER NOT NULL CHECK (review_allowed IN (0, 1)),
        consent_version     INTEGER NOT NULL CHECK (consent_version >= 0),
        capture_started_at  TEXT NOT NULL,
        received_at         TEXT NOT NULL,
        conflicting         INTEGER NOT NULL DEFAULT 0 CHECK (conflicting IN (0, 1)),
        settled             INTEGER NOT NULL DEFAULT 0 CHECK (settled IN (0, 1))
    )""",
    "CREATE INDEX IF NOT EXISTS utterances_device ON utterances (device_id, received_at)",
    "CREATE INDEX IF NOT EXISTS utterances_received ON utterances (received_at)",
    # A clip's audio as raw PCM, kept apart so that reading rows (the sampler, the app's
    # lists) never reads audio.
    """CREATE TABLE IF NOT EXISTS clip_audio (
        utterance_id  TEXT PRIMARY KEY,
        pcm           BLOB NOT NULL
    )""",
    # One answer per household request, whichever workers its speakers reach
    # (pipeline.arbitration): each live request is an entry of its household's contest.
    """CREATE TABLE IF NOT EXISTS contest_entries (
        utterance_id  TEXT PRIMARY KEY,
        contest_id    TEXT NOT NULL,
        household_id  TEXT NOT NULL,
        device_id     TEXT NOT NULL,
        entered_at    TEXT NOT NULL,
        finished_at   TEXT,
        spoke         INTEGER NOT NULL DEFAULT 0 CHECK (spoke IN (0, 1)),
        recognized    INTEGER NOT NULL DEFAULT 0 CHECK (recognized IN (0, 1)),
        level_db      REAL NOT NULL DEFAULT -200.0,
        outcome       TEXT CHECK (outcome IN ('answers', 'cancelled'))
    )""",
    "CREATE INDEX IF NOT EXISTS contest_household ON contest_entries (household_id, entered_at)",
    "CREATE INDEX IF NOT EXISTS contest_members ON contest_entries (contest_id)",
    "CREATE INDEX IF NOT EXISTS contest_device ON contest_entries (device_id, entered_at)",
]

# Version 5: "delete today" also covers requests the cloud had not seen yet, by the
# device's capture time, but only within the day it names (a clock days behind is no cover).
# The audio moved into the database: `audio_bytes` says how much a clip kept (NULL: none);
# `audio_path` stays only for the move from file-backed stores (pipeline.file_audio).
_MIGRATE_TO_5 = [
    "ALTER TABLE forgotten_before ADD COLUMN captured_since TEXT",
    "ALTER TABLE clips ADD COLUMN audio_bytes INTEGER CHECK (audio_bytes >= 0)",
]

# Version 1 (before the cloud stamped receipt times) had no received_at / review_blocked
# and a NOT NULL audio_path: rebuild the table, taking stored_at as the receipt time.
_MIGRATE_FROM_1 = [
    "ALTER TABLE clips RENAME TO clips_v1",
    _SCHEMA[2],
    """INSERT INTO clips SELECT utterance_id, device_id, household_id, capture_started_at, stored_at, stored_at,
        duration_seconds, transcript, end_reason, status, missing_chunks, wake_word, firmware_version,
        review_allowed, consent_version, NULL, NULLIF(audio_path, '') FROM clips_v1""",
    "DROP TABLE clips_v1",
    "DROP INDEX IF EXISTS clips_household",
]


def database_path(data_dir: Path) -> Path:
    """Where the clip store keeps its database."""
    return data_dir / "earmark.sqlite3"


# PostgreSQL's versions of the clip store's schema (pipeline/migrations/postgresql/).
POSTGRESQL_VERSIONS = postgresql_versions("pipeline")


def open_database(data_dir: Path, url: str | None = None) -> Database:
    """The cloud's database: PostgreSQL when `url` names it, else SQLite in `data_dir`;
    either way with the clip store's schema up to date.

    The data directory records which database its cloud uses, and a process given
    another is refused: a pipeline on PostgreSQL beside a consent service on SQLite would
    store audio the household said not to keep, and clips it had already deleted.
    """
    postgres_url = url if url is not None and is_postgresql(url) else None
    engine = SQLITE if postgres_url is None else f"postgresql {database_name(postgres_url)}"
    _check_engine(data_dir, engine)
    if postgres_url is not None:
        db = connect_postgresql(postgres_url)
        try:
            migrate_postgresql(db, "clip_store", POSTGRESQL_VERSIONS)
        except BaseException:
            db.close()
            raise
    else:
        connection = connect(data_dir)
        try:
            db = Database(SQLITE, connection, WriterLock(data_dir))
        except BaseException:
            connection.close()
            raise
    _record_engine(data_dir, engine)
    try:
        move_file_audio(db, data_dir)  # a store an earlier release left, once
    except BaseException:
        db.close()
        raise
    return db


ENGINE_MARKER = "database-engine"


def _check_engine(data_dir: Path, wanted: str) -> None:
    """Refuse a database other than the one this data directory's cloud already uses.

    `wanted` as the marker names it: "sqlite", or "postgresql" and the database's name.
    """
    marker = data_dir / ENGINE_MARKER
    try:
        recorded = marker.read_text().strip()
    except FileNotFoundError:
        # A data directory from before the marker only ever had SQLite; a new one takes
        # the database it is first opened with (recorded once that opened: `_record_engine`).
        recorded = SQLITE if database_path(data_dir).exists() else wanted
    if recorded != wanted:
        raise DatabaseUnavailable(
            f"the cloud in {data_dir} keeps its rows in {recorded.replace('postgresql ', 'PostgreSQL database ')}, "
            f"not {wanted.replace('postgresql ', 'PostgreSQL database ')}: give every cloud process the same "
            f"--database (or EARMARK_DATABASE); after moving the rows yourself, edit {marker}"
        )


def _record_engine(data_dir: Path, engine: str) -> None:
    marker = data_dir / ENGINE_MARKER
    if marker.exists():
        return
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process recorded one a moment ago: it must be the same
        _check_engine(data_dir, engine)
        return
    with os.fdopen(fd, "w") as out:
        out.write(engine + "\n")


def connect(data_dir: Path) -> sqlite3.Connection:
    """Open the shared database (WAL, secure delete, 0600 from the start) with its schema."""
    if sqlite3.sqlite_version_info < (3, 35):  # RETURNING (the sampler); Debian 12 has 3.40
        raise DatabaseUnavailable(f"SQLite {sqlite3.sqlite_version} is too old: Earmark needs 3.35 or newer")
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = database_path(data_dir)
    if not path.exists():
        # SQLite gives its -wal and -shm files the database file's mode: create it 0600 first.
        # Only when missing: closing any descriptor of an open database drops this process's
        # POSIX locks on it, and another connection could then delete the live WAL.
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA busy_timeout=10000")
    # No commit pays for a checkpoint (it was the consent transaction's p99): a
    # Checkpointer thread of each serving process does them, PASSIVE, beside the requests.
    db.execute("PRAGMA wal_autocheckpoint=0")
    # Deleted transcripts and consent rows are overwritten, not left in free pages.
    db.execute("PRAGMA secure_delete=ON")
    ensure_schema(db)
    return db


class Checkpointer:
    """Moves the WAL into the database once a second on its own connection and thread, off
    every request path. PASSIVE: it never waits for, or blocks, a reader or a writer."""

    def __init__(self, data_dir: Path, interval_seconds: float = 1.0) -> None:
        self._path = database_path(data_dir)
        self._interval = interval_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)

    def start(self) -> Checkpointer:
        """Start checkpointing in the background."""
        self._thread.start()
        return self

    def _run(self) -> None:
        db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            while not self._stop.wait(self._interval):
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as err:
                    _LOGGER.warning("WAL checkpoint failed (%s); retrying", err)
        finally:
            db.close()

    def stop(self) -> None:
        """Stop (the last connection to close checkpoints what is left)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


def ensure_schema(db: sqlite3.Connection) -> None:
    """Create or upgrade the clip store's tables (one transaction; safe with several openers)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version < SCHEMA_VERSION:
            old = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'clips'").fetchone()
            if old is not None and version < 2:
                for statement in _MIGRATE_FROM_1:
                    db.execute(statement)
            for statement in _SCHEMA:
                db.execute(statement)
            columns = {row[1] for row in db.execute("PRAGMA table_info(forgotten_before)")}
            if "captured_since" not in columns:
                for statement in _MIGRATE_TO_5:
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")

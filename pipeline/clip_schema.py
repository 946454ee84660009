"""The clip store's tables: where the database is, its engine, its schema versions.

The schema itself is SQL, `pipeline/migrations/{sqlite,postgresql}/NNNN.sql`, applied by
`pipeline.schema_versions`; what is left here is the one place that knows the layouts
SQLite databases of older releases have (`sqlite_version_of_older_release`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from pathlib import Path

from pipeline.database import (
    POSTGRESQL,
    SQLITE,
    Database,
    WriterLock,
    connect_postgresql,
    database_name,
    is_postgresql,
)
from pipeline.errors import DatabaseUnavailable
from pipeline.file_audio import move_file_audio
from pipeline.schema_versions import migrate, versions

_LOGGER = logging.getLogger(__name__)


def database_path(data_dir: Path) -> Path:
    """Where the clip store keeps its database."""
    return data_dir / "earmark.sqlite3"


# The clip store's schema versions (pipeline/migrations/sqlite/, pipeline/migrations/postgresql/).
COMPONENT = "clip_store"
SQLITE_VERSIONS = versions("pipeline", SQLITE)
POSTGRESQL_VERSIONS = versions("pipeline", POSTGRESQL)


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
    else:
        connection = connect(data_dir)
        try:
            db = Database(SQLITE, connection, WriterLock(data_dir))
        except BaseException:
            connection.close()
            raise
    try:
        migrate(db, COMPONENT, "pipeline", sqlite_version_of_older_release)
        _record_engine(data_dir, engine)
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
    """Open the shared database (WAL, secure delete, 0600 from the start); its schema comes after."""
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


def sqlite_version_of_older_release(db: Database) -> int:
    """The clip store version a SQLite database without an `earmark_schema` row already has.

    Asked once per database, by the runner, in the transaction that records the answer:
    the only place that reads the layout itself. Releases before the versioned files
    recorded theirs in `PRAGMA user_version`: 5 is version 2's layout; 2 to 4 have part
    of version 1 (whose statements create only what is missing); below 2 (the first
    release set none) the clips table still lacks receipt times and is rebuilt into
    version 1's first, as those releases did.
    """
    if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'clips'").fetchone() is None:
        return 0  # a new database
    user_version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if user_version >= 5:
        return 2
    if user_version < 2:
        db.executescript(_CLIPS_FROM_FIRST_RELEASE)
    return 0


# The first release's clips had no received_at or review_blocked, and a NOT NULL
# audio_path: rebuilt by SQLite's recipe (create new, copy, drop old, rename), taking
# stored_at as the receipt time. Version 1 then adds what else is missing.
_CLIPS_FROM_FIRST_RELEASE = """
CREATE TABLE clips_new (
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
    );
INSERT INTO clips_new SELECT utterance_id, device_id, household_id, capture_started_at, stored_at, stored_at,
    duration_seconds, transcript, end_reason, status, missing_chunks, wake_word, firmware_version,
    review_allowed, consent_version, NULL, NULLIF(audio_path, '') FROM clips;
DROP TABLE clips;
ALTER TABLE clips_new RENAME TO clips;
"""

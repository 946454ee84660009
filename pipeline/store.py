"""The clip store: one row per utterance and its audio (if kept), in the database, in one transaction.

Every row carries the household's review-consent tag as the device sent it
(`review_allowed`, `consent_version`, both NOT NULL), the cloud's own receipt time
(`received_at`, the database's clock: retention and eligibility never trust the
device's) and, when the cloud narrowed review itself (`review_blocked`), why. A clip
without a valid tag is rejected before anything is written. `audio_bytes` is NULL when
no audio was kept (muted, "don't keep my recordings", a wake with no speech).

The audio (raw 16 kHz mono PCM) lives in `clip_audio`, beside its row: workers on
several machines share nothing but the broker and the database, a save is one commit
(row and audio, or neither), and a deletion removes both at once. The row is inserted
*only if the utterance is not stored yet*, so a redelivered utterance never touches
what is stored. Stores of earlier releases (audio as WAV files under `clips/`) are
moved in at the first open (`pipeline.file_audio`).

The rules that span messages are decided here too, in the transaction that stores:
`utterances` records every admitted start (first tag, first receipt), see `admit_start`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sqlite3
import threading
import wave
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID

from contract.audio import CHANNELS, SAMPLE_RATE_HZ, SAMPLE_WIDTH_BYTES, bytes_to_seconds
from contract.errors import ContractError
from contract.topics import check_id
from pipeline.arbitration import ContestRules, Entry, Outcome, decide, is_live
from pipeline.database import (
    SQLITE,
    Database,
    connect_postgresql,
    database_name,
    is_postgresql,
    migrate_postgresql,
    postgresql_versions,
)
from pipeline.database import WriterLock as WriterLock  # re-exported: tests and benchmarks use it from here
from pipeline.database import utc_text as utc_text  # the store's callers have always imported it from here
from pipeline.errors import ClipRejected, DatabaseUnavailable
from pipeline.file_audio import move_file_audio

_LOGGER = logging.getLogger(__name__)

SCHEMA_VERSION = 5
# How long the utterance ledger remembers a start: far past any stream, outbox resend and
# spoken-deletion tombstone (a day).
LEDGER_LIFETIME = timedelta(days=2)
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


_CLIP_COLUMNS = (
    "utterance_id, device_id, household_id, capture_started_at, received_at, stored_at, duration_seconds, "
    "transcript, end_reason, status, missing_chunks, wake_word, firmware_version, review_allowed, "
    "consent_version, review_blocked, audio_bytes"
)


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


@dataclass(frozen=True)
class Clip:
    """One stored utterance."""

    utterance_id: UUID
    device_id: str
    household_id: str
    capture_started_at: datetime  # the device's claim, shown to the household
    received_at: datetime  # the cloud's clock when the start arrived: retention and eligibility
    stored_at: datetime
    duration_seconds: float
    transcript: str
    end_reason: str
    status: str
    missing_chunks: int
    wake_word: str
    firmware_version: str
    review_allowed: bool
    consent_version: int
    review_blocked: str | None = None  # why the cloud itself ruled review out, if it did
    audio_bytes: int | None = None  # set by the store: PCM bytes kept, None when no audio was kept


@dataclass(frozen=True)
class StartClaim:
    """What one start message claims, as the utterance ledger records it."""

    utterance_id: UUID
    device_id: str
    household_id: str
    review_allowed: bool
    consent_version: int
    capture_started_at: datetime


@dataclass(frozen=True)
class DeviceAdmission:
    """What the database knows about a start, decided in the transaction that records it."""

    household_id: str | None  # None: the device is not enrolled
    keep_audio: bool
    stored: bool  # the utterance is stored already: what is stored stays as it is
    forgotten: bool = False  # its household deleted it before it was stored: served as a duplicate
    received_at: datetime | None = None  # the database's clock at the utterance's first admitted start
    conflicting: bool = False  # this start's tag or household differs from the first one's
    foreign: bool = False  # the utterance id is another device's
    contest_id: str | None = None  # the household contest it is an entrant of (None: it answers alone)
    outcome: Outcome | None = None  # what that contest decided for it already


class ClipStore(Protocol):
    """What the pipeline needs from a clip store."""

    def admit_start(self, claim: StartClaim, rules: ContestRules | None = None) -> DeviceAdmission:
        """Record a start in the utterance ledger and decide, in that transaction, what it is."""
        ...

    def settle_contest(
        self, utterance_id: UUID, rules: ContestRules, *, spoke: bool, recognized: bool, level_db: float
    ) -> Outcome | None:
        """Report how a contest entrant ended; its outcome if the contest can be decided now."""
        ...

    def contest_outcome(self, utterance_id: UUID, rules: ContestRules | None = None) -> Outcome | None:
        """A contest entrant's outcome (deciding it if it can be, given `rules`)."""
        ...

    def contest_entrants(self, utterance_id: UUID) -> int:
        """How many speakers are in this entrant's contest so far."""
        ...

    def note_conflict(self, utterance_id: UUID) -> None:
        """A second start with another tag was seen: the utterance is never reviewable."""
        ...

    def save(self, clip: Clip, audio: bytes | None) -> bool:
        """Store a clip (and its audio, if kept) atomically; False if it was stored already."""
        ...

    def prune_ledger(self) -> int:
        """Forget ledger entries past LEDGER_LIFETIME (stored clips keep their tag)."""
        ...

    def get(self, utterance_id: UUID) -> Clip | None:
        """A stored clip."""
        ...

    def close(self) -> None:
        """Release the database."""
        ...


class SqlClipStore:
    """Rows and audio in the cloud's database (SQLite in `data_dir`, or PostgreSQL at `database`)."""

    def __init__(self, data_dir: Path, *, database: str | None = None, crash_hook: object = None) -> None:
        self._data_dir = data_dir
        self._db = open_database(data_dir, database)
        self._crash_hook = crash_hook  # a test seam: called at named points inside save()

    def _crash_point(self, name: str) -> None:
        if callable(self._crash_hook):
            self._crash_hook(name)

    def enroll(self, device_id: str, household_id: str) -> str | None:
        """Register a device as belonging to a household; return its previous household."""
        try:
            check_id("device id", device_id)
            check_id("household id", household_id)
        except ContractError as err:
            raise ClipRejected(str(err)) from err
        previous = self.device_household(device_id)
        with self._db.writing():  # a turn like every writer's, not SQLite's sleeping retries
            self._db.execute(
                "INSERT INTO devices (device_id, household_id) VALUES (?, ?) "
                "ON CONFLICT (device_id) DO UPDATE SET household_id = excluded.household_id",
                (device_id, household_id),
            )
        return previous

    def device_household(self, device_id: str) -> str | None:
        """The household a device is enrolled in, or None."""
        row = self._db.execute("SELECT household_id FROM devices WHERE device_id = ?", (device_id,)).fetchone()
        return None if row is None else str(row[0])

    def admit_start(self, claim: StartClaim, rules: ContestRules | None = None) -> DeviceAdmission:
        """Record a start in the utterance ledger and decide what it is, in one transaction.

        The first start any worker admits fixes the utterance's tag, household and receipt
        time (the database's clock). A later start, on any worker, before or after the clip
        is stored, is compared with it: another tag or household marks the utterance
        conflicting, and its clip (stored, or stored later by whoever does) unreviewable.
        A start for another device's utterance id changes nothing. With `rules`, a live
        request also enters its household's contest (see `pipeline.arbitration`).
        """
        utterance_id = str(claim.utterance_id)
        tag = (claim.household_id, claim.review_allowed, claim.consent_version)
        with self._db.writing() as db:
            enrolled = db.execute(
                "SELECT d.household_id, COALESCE(p.keep_audio, 1) FROM devices d "
                "LEFT JOIN storage_policy p ON p.household_id = d.household_id WHERE d.device_id = ?",
                (claim.device_id,),
            ).fetchone()
            first = _first_start(db, utterance_id)
            conflicting = False
            if first is not None:
                if first[0] != claim.device_id:
                    return DeviceAdmission(None, True, False, foreign=True)
                conflicting = (first[1], bool(first[2]), int(first[3])) != tag
                if conflicting:
                    _mark_conflict(db, utterance_id)
                received_at, capture = str(first[4]), str(first[5])
            else:
                if enrolled is None or str(enrolled[0]) != claim.household_id:
                    # Refused by the caller (check_enrolment); nothing recorded for a stranger.
                    return DeviceAdmission(None if enrolled is None else str(enrolled[0]), True, False)
                received_at, capture = utc_text(db.now()), utc_text(claim.capture_started_at)
                db.execute(
                    "INSERT INTO utterances (utterance_id, device_id, household_id, review_allowed, consent_version, "
                    "capture_started_at, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (utterance_id, claim.device_id, claim.household_id, int(claim.review_allowed),
                     claim.consent_version, capture, received_at),
                )  # fmt: skip
            stored = db.execute("SELECT 1 FROM clips WHERE utterance_id = ?", (utterance_id,)).fetchone() is not None
            forgotten = _forgotten(db, utterance_id, claim.device_id, claim.household_id, received_at, capture)
            contest = db.execute(
                "SELECT contest_id, outcome FROM contest_entries WHERE utterance_id = ?", (utterance_id,)
            ).fetchone()
            if contest is None and first is None and rules is not None and not stored and not forgotten:
                contest = _enter_contest(db, claim, received_at, rules)
        return DeviceAdmission(
            household_id=None if enrolled is None else str(enrolled[0]),
            keep_audio=True if enrolled is None else bool(enrolled[1]),
            stored=stored,
            forgotten=forgotten,
            received_at=datetime.fromisoformat(received_at),
            conflicting=conflicting,
            contest_id=None if contest is None else str(contest[0]),
            outcome=None if contest is None or contest[1] is None else Outcome(contest[1]),
        )

    def settle_contest(
        self, utterance_id: UUID, rules: ContestRules, *, spoke: bool, recognized: bool, level_db: float
    ) -> Outcome | None:
        """Report how an entrant ended and decide its contest if it can be: its outcome, or
        None while the contest must still wait (then ask again with `contest_outcome`)."""
        with self._db.writing() as db:
            db.execute(
                "UPDATE contest_entries SET finished_at = ?, spoke = ?, recognized = ?, level_db = ? "
                "WHERE utterance_id = ? AND finished_at IS NULL",
                (utc_text(db.now()), int(spoke), int(recognized), max(level_db, -200.0), str(utterance_id)),
            )
            return _decide_contest(db, str(utterance_id), rules)

    def contest_entrants(self, utterance_id: UUID) -> int:
        """How many speakers are in this entrant's contest so far (itself included)."""
        row = self._db.execute(
            "SELECT COUNT(*) FROM contest_entries WHERE contest_id = "
            "(SELECT contest_id FROM contest_entries WHERE utterance_id = ?)",
            (str(utterance_id),),
        ).fetchone()
        return int(row[0])

    def contest_outcome(self, utterance_id: UUID, rules: ContestRules | None = None) -> Outcome | None:
        """An entrant's outcome once decided (None: not yet). With `rules`, decide it if it can
        be now (under the writer lock: one decision, whichever worker makes it)."""
        if rules is None:
            row = self._db.execute(
                "SELECT outcome FROM contest_entries WHERE utterance_id = ?", (str(utterance_id),)
            ).fetchone()
            return None if row is None or row[0] is None else Outcome(row[0])
        with self._db.writing() as db:
            return _decide_contest(db, str(utterance_id), rules)

    def note_conflict(self, utterance_id: UUID) -> None:
        """A second start with another tag reached this worker: never reviewable, on every worker."""
        with self._db.writing() as db:
            _mark_conflict(db, str(utterance_id))

    def prune_ledger(self) -> int:
        """Forget ledger entries older than LEDGER_LIFETIME: by then every outbox has given
        up, and a stored clip keeps its own tag (a start after this is compared with it)."""
        with self._db.writing() as db:
            now = db.now()
            pruned = db.execute("DELETE FROM utterances WHERE received_at < ?", (utc_text(now - LEDGER_LIFETIME),))
            # Contests matter for seconds, and a minute for the per-device contest rate.
            db.execute("DELETE FROM contest_entries WHERE entered_at < ?", (utc_text(now - timedelta(hours=1)),))
            return int(pruned.rowcount)

    def save(self, clip: Clip, audio: bytes | None) -> bool:
        """Store a clip and its audio in one transaction; False (touching nothing stored) if the
        utterance is stored already.

        A clip its household deleted before it arrived here is settled without being written.
        """
        _validate(clip)
        with self._db.writing():
            inserted = self._insert(clip, audio)
        if inserted is None:  # deleted by its household before it got here
            _LOGGER.info("utterance %s was deleted by its household before it was stored", clip.utterance_id)
            return True
        if inserted:
            self._crash_point("committed")
        return inserted

    def _insert(self, clip: Clip, audio: bytes | None) -> bool | None:
        """The row, in the caller's write transaction: True if inserted, False if stored already,
        None if forgotten.

        What the utterance ledger recorded wins over what this worker holds: the receipt
        time of the first start (a resend to another worker is no new request), and a
        conflicting start seen by any worker. Spoken deletions are decided here too.
        """
        utterance_id = str(clip.utterance_id)
        first = _first_start(self._db, utterance_id)
        received_at = utc_text(clip.received_at)
        review_blocked = clip.review_blocked
        if first is not None and first[0] == clip.device_id:
            received_at = str(first[4])
            if first[6]:
                review_blocked = review_blocked or "conflicting_start"
        self._db.execute("UPDATE utterances SET settled = 1 WHERE utterance_id = ?", (utterance_id,))
        if _forgotten(
            self._db, utterance_id, clip.device_id, clip.household_id, received_at, utc_text(clip.capture_started_at)
        ):
            return None
        inserted = self._db.execute(
            f"INSERT INTO clips ({_CLIP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "  # noqa: S608 - constant
            "ON CONFLICT (utterance_id) DO NOTHING",
            (
                utterance_id,
                clip.device_id,
                clip.household_id,
                utc_text(clip.capture_started_at),
                received_at,
                utc_text(clip.stored_at),
                round(bytes_to_seconds(len(audio or b"")), 3),
                clip.transcript,
                clip.end_reason,
                clip.status,
                clip.missing_chunks,
                clip.wake_word,
                clip.firmware_version,
                int(clip.review_allowed),
                clip.consent_version,
                review_blocked,
                None if audio is None else len(audio),
            ),
        ).rowcount
        if inserted and audio is not None:
            self._db.execute("INSERT INTO clip_audio (utterance_id, pcm) VALUES (?, ?)", (utterance_id, audio))
        self._crash_point("row_inserted")
        return bool(inserted)

    def block_review(self, utterance_id: UUID, reason: str) -> None:
        """Rule a stored clip out of review; a reason already recorded stays."""
        with self._db.writing():  # must not time out behind back-to-back writers: it narrows review
            self._db.execute(
                "UPDATE clips SET review_blocked = COALESCE(review_blocked, ?) WHERE utterance_id = ?",
                (reason, str(utterance_id)),
            )

    def get(self, utterance_id: UUID) -> Clip | None:
        """A stored clip, or None."""
        row = self._db.execute(
            f"SELECT {_CLIP_COLUMNS} FROM clips WHERE utterance_id = ?",  # noqa: S608 - constant
            (str(utterance_id),),
        ).fetchone()
        if row is None:
            return None
        return Clip(
            utterance_id=UUID(row[0]),
            device_id=row[1],
            household_id=row[2],
            capture_started_at=datetime.fromisoformat(row[3]),
            received_at=datetime.fromisoformat(row[4]),
            stored_at=datetime.fromisoformat(row[5]),
            duration_seconds=row[6],
            transcript=row[7],
            end_reason=row[8],
            status=row[9],
            missing_chunks=row[10],
            wake_word=row[11],
            firmware_version=row[12],
            review_allowed=bool(row[13]),
            consent_version=row[14],
            review_blocked=row[15],
            audio_bytes=None if row[16] is None else int(row[16]),
        )

    def audio(self, utterance_id: UUID) -> bytes | None:
        """A stored clip's audio as a WAV file's bytes, or None."""
        row = self._db.execute("SELECT pcm FROM clip_audio WHERE utterance_id = ?", (str(utterance_id),)).fetchone()
        return None if row is None else wav_bytes(bytes(row[0]))

    def count(self) -> int:
        """How many clips are stored."""
        return int(self._db.execute("SELECT COUNT(*) FROM clips").fetchone()[0])

    def close(self) -> None:
        """Close the database."""
        self._db.close()


_LEDGER_COLUMNS = "device_id, household_id, review_allowed, consent_version, received_at, capture_started_at"
_LEDGER_ROW = f"SELECT {_LEDGER_COLUMNS}, conflicting FROM utterances WHERE utterance_id = ?"  # noqa: S608 - constant
# A clip stored before the ledger knew it, entered from its row (already settled).
_LEDGER_FROM_CLIP = (
    f"INSERT INTO utterances ({_LEDGER_COLUMNS}, conflicting, settled, utterance_id) "  # noqa: S608 - constant
    f"SELECT {_LEDGER_COLUMNS}, CASE WHEN review_blocked = 'conflicting_start' THEN 1 ELSE 0 END, 1, utterance_id "
    "FROM clips WHERE utterance_id = ?"
)


def _first_start(db: Database, utterance_id: str) -> Any:
    """The ledger's first start of an utterance: (device, household, review_allowed, version,
    received_at, capture_started_at, conflicting), or None.

    A clip stored before the ledger knew it (an older release, or an entry pruned) is
    entered from its row, so a start sent after that is compared with what is stored.
    """
    row = db.execute(_LEDGER_ROW, (utterance_id,)).fetchone()
    if row is not None or not db.execute("SELECT 1 FROM clips WHERE utterance_id = ?", (utterance_id,)).fetchone():
        return row
    db.execute(_LEDGER_FROM_CLIP, (utterance_id,))
    return db.execute(_LEDGER_ROW, (utterance_id,)).fetchone()


def _enter_contest(
    db: Database, claim: StartClaim, received_at: str, rules: ContestRules
) -> tuple[str, str | None] | None:
    """Enter a live request in its household's contest, in the admitting transaction:
    (contest id, outcome so far), or None when it answers alone."""
    now = datetime.fromisoformat(received_at)
    if not is_live(claim.capture_started_at, now, rules):
        return None  # captured a while ago (an outbox sent late): it contests no live request
    recent = db.execute(
        "SELECT COUNT(*) FROM contest_entries WHERE device_id = ? AND entered_at >= ?",
        (claim.device_id, utc_text(now - timedelta(minutes=1))),
    ).fetchone()[0]
    if recent >= rules.contests_per_minute:
        _LOGGER.warning("device %s enters too many contests: its request answers alone", claim.device_id)
        return None
    opened = db.execute(
        "SELECT utterance_id FROM contest_entries WHERE household_id = ? AND entered_at > ? "
        "AND contest_id = utterance_id ORDER BY entered_at DESC LIMIT 1",
        (claim.household_id, utc_text(now - timedelta(seconds=rules.window_seconds))),
    ).fetchone()
    utterance_id = str(claim.utterance_id)
    contest_id, outcome = utterance_id, None
    if opened is not None:
        members = db.execute(
            "SELECT device_id, outcome FROM contest_entries WHERE contest_id = ?", (opened[0],)
        ).fetchall()
        if any(device == claim.device_id for device, _ in members):
            return None  # the same speaker again: one speaker cannot hear one request twice
        contest_id = str(opened[0])
        if any(decided is not None for _, decided in members):
            outcome = Outcome.CANCELLED.value  # decided already: another speaker is answering
    db.execute(
        "INSERT INTO contest_entries (utterance_id, contest_id, household_id, device_id, entered_at, outcome) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (utterance_id, contest_id, claim.household_id, claim.device_id, received_at, outcome),
    )
    return contest_id, outcome


def _decide_contest(db: Database, utterance_id: str, rules: ContestRules) -> Outcome | None:
    """This entrant's outcome, deciding its contest now if `arbitration.decide` says it can be."""
    row = db.execute(
        "SELECT contest_id, outcome FROM contest_entries WHERE utterance_id = ?", (utterance_id,)
    ).fetchone()
    if row is None:
        return Outcome.ANSWERS  # no contest (or one long forgotten): it answers alone
    if row[1] is not None:
        return Outcome(row[1])
    rows = db.execute(
        "SELECT utterance_id, entered_at, finished_at, spoke, recognized, level_db FROM contest_entries "
        "WHERE contest_id = ?",
        (row[0],),
    ).fetchall()
    entries = [
        Entry(
            str(r[0]),
            datetime.fromisoformat(r[1]),
            None if r[2] is None else datetime.fromisoformat(r[2]),
            bool(r[3]),
            bool(r[4]),
            float(r[5]),
        )
        for r in rows
    ]
    opened_at = min(e.entered_at for e in entries)
    decision = decide(entries, opened_at, db.now(), rules)
    if decision is None:
        return None
    db.executemany(
        "UPDATE contest_entries SET outcome = ? WHERE utterance_id = ? AND outcome IS NULL",
        [(outcome.value, entrant) for entrant, outcome in decision.items()],
    )
    return decision[utterance_id]


def _mark_conflict(db: Database, utterance_id: str) -> None:
    """The utterance had two tags: whichever was first, nobody may hear it (only ever narrows)."""
    _first_start(db, utterance_id)
    db.execute("UPDATE utterances SET conflicting = 1 WHERE utterance_id = ?", (utterance_id,))
    db.execute(
        "UPDATE clips SET review_blocked = COALESCE(review_blocked, 'conflicting_start') WHERE utterance_id = ?",
        (utterance_id,),
    )


def _forgotten(db: Database, utterance_id: str, device_id: str, household_id: str, received_at: str,
               capture_started_at: str) -> bool:  # fmt: skip
    """Whether a spoken deletion already covers this utterance.

    "Forget that" leaves a tombstone for (utterance, device). "Delete everything I said
    today" covers what the cloud first received before it, whichever worker stores it and
    whenever, and what the device captured before it on that day (a request still in an
    outbox the cloud had not seen): the device's clock may only narrow what is kept.
    """
    return (
        db.execute(
            "SELECT 1 FROM forgotten WHERE utterance_id = ? AND device_id = ? UNION ALL "
            "SELECT 1 FROM forgotten_before WHERE household_id = ? AND (received_before > ? "
            "OR (captured_since IS NOT NULL AND ? >= captured_since AND received_before > ?))",
            (utterance_id, device_id, household_id, received_at, capture_started_at, capture_started_at),
        ).fetchone()
        is not None
    )


def wav_bytes(pcm: bytes) -> bytes:
    """Raw clip PCM as a WAV file (what the app and reviewers' browsers play)."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(CHANNELS)
        wav.setsampwidth(SAMPLE_WIDTH_BYTES)
        wav.setframerate(SAMPLE_RATE_HZ)
        wav.writeframes(pcm)
    return out.getvalue()


def _validate(clip: Clip) -> None:
    try:
        check_id("device id", clip.device_id)
        check_id("household id", clip.household_id)
    except ContractError as err:
        raise ClipRejected(str(err)) from err
    # bool is checked by type, not truthiness: None or "yes" is no consent tag at all.
    if type(clip.review_allowed) is not bool:
        raise ClipRejected("clip has no valid review_allowed tag")
    if type(clip.consent_version) is not int or clip.consent_version < 0:
        raise ClipRejected("clip has no valid consent_version")

"""The clip store: one row per utterance, its audio as a file, never one without the other.

Every row carries the household's review-consent tag as the device sent it
(`review_allowed`, `consent_version`, both NOT NULL). A clip without a valid tag is
rejected before anything touches the disk.

Atomicity: the audio is written to `*.part` and fsynced; inside one SQLite transaction
the row is inserted and the file renamed to its final name; then the transaction commits.
A crash before the commit leaves at most a file with no row, which `recover()` (run on
open) deletes; a crash after it leaves both. So after recovery there is never a row
whose audio is missing, nor audio with no row.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
import wave
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol
from uuid import UUID

from contract.audio import CHANNELS, SAMPLE_RATE_HZ, SAMPLE_WIDTH_BYTES, bytes_to_seconds
from contract.errors import ContractError
from contract.topics import check_id
from pipeline.errors import ClipRejected

_LOGGER = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    device_id     TEXT PRIMARY KEY,
    household_id  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS clips (
    utterance_id        TEXT PRIMARY KEY,
    device_id           TEXT NOT NULL,
    household_id        TEXT NOT NULL,
    capture_started_at  TEXT NOT NULL,
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
    audio_path          TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS clips_household ON clips (household_id, capture_started_at);
"""


def ensure_schema(db: sqlite3.Connection) -> None:
    """Create the clip store's tables if they are missing."""
    db.executescript(_SCHEMA)


def database_path(data_dir: Path) -> Path:
    """Where the clip store keeps its database."""
    return data_dir / "earmark.sqlite3"


@dataclass(frozen=True)
class Clip:
    """One stored utterance."""

    utterance_id: UUID
    device_id: str
    household_id: str
    capture_started_at: datetime
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
    audio_path: Path | None = None  # set by the store


class ClipStore(Protocol):
    """What the pipeline needs from a clip store (SQLite now; PostgreSQL can follow)."""

    def device_household(self, device_id: str) -> str | None:
        """The household a device is enrolled in, or None."""
        ...

    def enroll(self, device_id: str, household_id: str) -> None:
        """Register a device as belonging to a household."""
        ...

    def save(self, clip: Clip, audio: bytes) -> None:
        """Store a clip and its audio atomically."""
        ...

    def get(self, utterance_id: UUID) -> Clip | None:
        """A stored clip."""
        ...

    def close(self) -> None:
        """Release the database."""
        ...


class SQLiteClipStore:
    """SQLite (WAL) rows, audio as WAV files under `data_dir/clips/`."""

    def __init__(self, data_dir: Path, *, crash_hook: object = None) -> None:
        self._data_dir = data_dir
        self._clips_dir = data_dir / "clips"
        self._clips_dir.mkdir(parents=True, exist_ok=True)
        # check_same_thread=False: the pipeline gives the store one dedicated thread.
        self._db = sqlite3.connect(database_path(data_dir), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=10000")  # the review service writes here too
        ensure_schema(self._db)
        self._crash_hook = crash_hook  # a test seam: called at named points inside save()
        self.recover()

    def _crash_point(self, name: str) -> None:
        if callable(self._crash_hook):
            self._crash_hook(name)

    def enroll(self, device_id: str, household_id: str) -> None:
        """Register a device as belonging to a household."""
        try:
            check_id("device id", device_id)
            check_id("household id", household_id)
        except ContractError as err:
            raise ClipRejected(str(err)) from err
        self._db.execute(
            "INSERT INTO devices (device_id, household_id) VALUES (?, ?) "
            "ON CONFLICT (device_id) DO UPDATE SET household_id = excluded.household_id",
            (device_id, household_id),
        )

    def device_household(self, device_id: str) -> str | None:
        """The household a device is enrolled in, or None."""
        row = self._db.execute("SELECT household_id FROM devices WHERE device_id = ?", (device_id,)).fetchone()
        return None if row is None else str(row[0])

    def _audio_path(self, clip: Clip) -> Path:
        return self._clips_dir / clip.household_id / f"{clip.utterance_id}.wav"

    def save(self, clip: Clip, audio: bytes) -> None:
        """Store a clip and its audio atomically; reject one without a valid consent tag."""
        _validate(clip)
        final = self._audio_path(clip)
        final.parent.mkdir(parents=True, exist_ok=True)
        partial = final.with_suffix(".wav.part")
        with wave.open(str(partial), "wb") as out:
            out.setnchannels(CHANNELS)
            out.setsampwidth(SAMPLE_WIDTH_BYTES)
            out.setframerate(SAMPLE_RATE_HZ)
            out.writeframes(audio)
        with open(partial, "rb") as handle:
            os.fsync(handle.fileno())
        self._crash_point("audio_written")
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT INTO clips VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    str(clip.utterance_id),
                    clip.device_id,
                    clip.household_id,
                    # UTC with fixed precision, so retention and range queries can compare the text.
                    clip.capture_started_at.astimezone(UTC).isoformat(timespec="microseconds"),
                    clip.stored_at.astimezone(UTC).isoformat(timespec="microseconds"),
                    round(bytes_to_seconds(len(audio)), 3),
                    clip.transcript,
                    clip.end_reason,
                    clip.status,
                    clip.missing_chunks,
                    clip.wake_word,
                    clip.firmware_version,
                    int(clip.review_allowed),
                    clip.consent_version,
                    str(final.relative_to(self._data_dir)),
                ),
            )
            partial.replace(final)
            _fsync_dir(final.parent)
            self._crash_point("renamed")
            self._db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            for path in (partial, final):
                path.unlink(missing_ok=True)
            raise

    def get(self, utterance_id: UUID) -> Clip | None:
        """A stored clip, or None."""
        row = self._db.execute("SELECT * FROM clips WHERE utterance_id = ?", (str(utterance_id),)).fetchone()
        if row is None:
            return None
        return Clip(
            utterance_id=UUID(row[0]),
            device_id=row[1],
            household_id=row[2],
            capture_started_at=datetime.fromisoformat(row[3]),
            stored_at=datetime.fromisoformat(row[4]),
            duration_seconds=row[5],
            transcript=row[6],
            end_reason=row[7],
            status=row[8],
            missing_chunks=row[9],
            wake_word=row[10],
            firmware_version=row[11],
            review_allowed=bool(row[12]),
            consent_version=row[13],
            audio_path=self._data_dir / row[14],
        )

    def count(self) -> int:
        """How many clips are stored."""
        return int(self._db.execute("SELECT COUNT(*) FROM clips").fetchone()[0])

    def recover(self, grace_seconds: float = 60.0) -> None:
        """Delete audio files that no committed row points at (left by a crash).

        Files younger than `grace_seconds` are spared: another process sharing the data
        directory may be between its rename and its commit.
        """
        known = {row[0] for row in self._db.execute("SELECT audio_path FROM clips")}
        cutoff = time.time() - grace_seconds
        for path in self._clips_dir.rglob("*"):
            if not path.is_file() or path.stat().st_mtime > cutoff:
                continue
            if str(path.relative_to(self._data_dir)) not in known:
                _LOGGER.warning("removing orphaned audio file %s", path.name)
                path.unlink()

    def close(self) -> None:
        """Close the database."""
        self._db.close()


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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

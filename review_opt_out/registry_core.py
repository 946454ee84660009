"""What every part of the consent registry shares: the connection, its transactions and its clock."""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pipeline import clip_queries
from pipeline.clip_schema import open_database
from pipeline.database import Database
from review_opt_out.errors import NotFound, ReviewError
from review_opt_out.registry_schema import upgrade
from review_opt_out.signing import ConsentSigner


class Channel(StrEnum):
    """Where a consent change came from."""

    SIGNUP = "signup"
    APP = "app"
    VOICE = "voice"
    ADMIN = "admin"


JUST_SAID = timedelta(minutes=10)  # "what I just said" never reaches further back than this
_TOMBSTONE_LIFETIME = timedelta(days=1)
ACTIVATION_TIME = timedelta(hours=72)  # a reviewer's one-time activation link

RETENTION_CHOICES = {"3_months": 90, "18_months": 540, "never": None}


@dataclass(frozen=True)
class Household:
    """A household and its current consent."""

    household_id: str
    name: str
    review_allowed: bool
    consent_version: int
    retention_days: int | None
    keep_recordings: bool
    time_zone: str = "UTC"


@dataclass(frozen=True)
class RecordingFilter:
    """Which of a household's recordings: by speaker, by date, heard by a person (all when empty)."""

    device_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    heard: bool = False


@dataclass(frozen=True)
class ConsentChange:
    """One row of the consent history."""

    version: int
    review_allowed: bool
    changed_by: str
    channel: str
    changed_at: str


def _now(db: Database) -> datetime:
    """The registry's clock: the database's, the one every pipeline worker stamps receipts by."""
    return db.now()


def zone(name: str) -> ZoneInfo:
    """A household's time zone by its IANA name, or ReviewError."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise ReviewError(f"unknown time zone {name[:64]!r} (use an IANA name such as Europe/Berlin)") from err


def _sha256(token: str) -> str:
    """What is stored of a one-time token: its SHA-256, never the token."""
    return hashlib.sha256(token.encode()).hexdigest()


class RegistryCore:
    """The connection, its lock and clock, and what every part of the registry shares;
    every public method of the parts is one transaction."""

    def __init__(
        self,
        data_dir: Path,
        *,
        database: str | None = None,
        default_review_allowed: bool = False,
        signer: ConsentSigner | None = None,
    ) -> None:
        self._data_dir = data_dir
        self._lock = threading.RLock()
        self._db = open_database(data_dir, database)
        try:
            self._open()
        except BaseException:
            self._db.close()
            raise
        # Loaded when the first consent state is signed: read-only commands need no key.
        self._signer = signer
        # A new household starts with NO review consent unless the operator says otherwise.
        self._default_review_allowed = default_review_allowed

    def _open(self) -> None:
        """The registry's schema, upgrades and unfinished work."""
        upgrade(self._db)
        if not self._db.execute("SELECT 1 FROM migrations WHERE name = 'storage_policy'").fetchone():
            with self.transaction() as db:
                # Households that chose "don't keep" before the clip store read storage_policy
                # (every change since writes both): once, not a write lock over every
                # household at each open.
                choices = db.execute("SELECT household_id, keep_recordings FROM households").fetchall()
                clip_queries.keep_audio_unless_set(db, [(str(h), bool(keep)) for h, keep in choices])
                # Another process may have opened the same old database at the same moment.
                db.execute("INSERT INTO migrations VALUES ('storage_policy') ON CONFLICT (name) DO NOTHING")
        self._finish_file_deletions([row[0] for row in self._db.execute("SELECT path FROM audio_deletions")])
        # Eligibility's retention cutoff follows this module's clock on both engines.
        self._db.install_cutoff(self._now)

    def _now(self) -> datetime:
        """The database's clock (taken under the connection's lock: web threads share it)."""
        with self._lock:
            return _now(self._db)

    @property
    def signer(self) -> ConsentSigner:
        """The consent signing key (ReviewError if `earmark review setup` never made one)."""
        if self._signer is None:
            self._signer = ConsentSigner.load(self._data_dir)
        return self._signer

    @property
    def db(self) -> Database:
        """The connection (for the audit verifier and tests)."""
        return self._db

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Database]:
        """One write transaction (other threads and processes wait: `Database.writing`)."""
        # One connection serves the web app's worker threads: the lock keeps each
        # transaction whole, the writer lock keeps other processes' writers out while it runs.
        with self._lock, self._db.writing() as db:
            yield db

    @contextlib.contextmanager
    def reading(self) -> Iterator[Database]:
        """Exclusive use of the connection for reads."""
        with self._lock:
            yield self._db

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def household(self, household_id: str) -> Household:
        """A household, or NotFound."""
        with self.reading() as db:
            row = db.execute(
                "SELECT household_id, name, review_allowed, consent_version, retention_days, keep_recordings, "
                "time_zone FROM households WHERE household_id = ?",
                (household_id,),
            ).fetchone()
        if row is None:
            raise NotFound("no such household")
        return Household(row[0], row[1], bool(row[2]), row[3], row[4], bool(row[5]), row[6])

    def _finish_file_deletions(self, paths: list[str]) -> None:
        """Audio files an earlier release deleted the rows of but crashed before unlinking."""
        if not paths:
            return  # the usual case: no write transaction at open
        for path in paths:
            (self._data_dir / path).unlink(missing_ok=True)
        with self.transaction() as db:
            db.executemany("DELETE FROM audio_deletions WHERE path = ?", [(path,) for path in paths])

"""Consent registry, review pool, reviewer assignments and deletion, in the cloud's database.

It shares the database of the pipeline's clip store (SQLite or PostgreSQL,
`pipeline.database`), so that a consent change, the
purge of the household's clips from the review pool, the revocation of open reviewer
assignments and the audit entry commit in ONE transaction: there is no moment at which
a household has opted out but its clips are still reviewable.

Eligibility for review is one rule, in `review_opt_out.eligibility`: the registry
decides, a device's tag can only narrow. Every consent state the service publishes is
signed (`review_opt_out.signing`), so devices believe no one else.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from contract.messages import ConsentState
from pipeline.database import SQLITE, Database, migrate_postgresql, postgresql_versions
from pipeline.store import open_database, utc_text, wav_bytes
from review_opt_out import audit
from review_opt_out.eligibility import ELIGIBLE, JOINS, VERDICT
from review_opt_out.errors import CountChanged, NotFound, ReviewError
from review_opt_out.signing import ConsentSigner

_LOGGER = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS households (
    household_id     TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    review_allowed   INTEGER NOT NULL CHECK (review_allowed IN (0, 1)),
    consent_version  INTEGER NOT NULL CHECK (consent_version >= 1),
    retention_days   INTEGER CHECK (retention_days IS NULL OR retention_days > 0),
    keep_recordings  INTEGER NOT NULL DEFAULT 1 CHECK (keep_recordings IN (0, 1)),
    created_at       TEXT NOT NULL,
    time_zone        TEXT NOT NULL DEFAULT 'UTC'
);
-- email_status 'unverified': joined from an invitation link the inviter handled, so nobody
-- proved the address. An address is unique per household, not overall (members.py).
CREATE TABLE IF NOT EXISTS members (
    member_id      TEXT PRIMARY KEY,
    household_id   TEXT NOT NULL REFERENCES households (household_id),
    email          TEXT NOT NULL,
    display_name   TEXT NOT NULL,
    password_hash  TEXT NOT NULL,
    role           TEXT NOT NULL DEFAULT 'owner' CHECK (role IN ('owner', 'member')),
    email_status   TEXT NOT NULL DEFAULT 'verified' CHECK (email_status IN ('verified', 'unverified')),
    UNIQUE (household_id, email)
);
CREATE TABLE IF NOT EXISTS invitations (
    token_hash    TEXT PRIMARY KEY,
    household_id  TEXT NOT NULL REFERENCES households (household_id),
    email         TEXT NOT NULL,
    display_name  TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('owner', 'member')),
    expires_at    TEXT NOT NULL,
    -- Per household: one household's invitation never replaces another's.
    UNIQUE (household_id, email)
);
CREATE TABLE IF NOT EXISTS consent_history (
    household_id    TEXT NOT NULL REFERENCES households (household_id),
    version         INTEGER NOT NULL,
    review_allowed  INTEGER NOT NULL,
    changed_by      TEXT NOT NULL,
    channel         TEXT NOT NULL CHECK (channel IN ('signup', 'app', 'voice', 'admin')),
    changed_at      TEXT NOT NULL,
    PRIMARY KEY (household_id, version)
);
-- A reviewer's password_hash is '' until its person activates the account through the
-- one-time link whose SHA-256 is activation_hash; created_by is the admin who made it.
CREATE TABLE IF NOT EXISTS reviewers (
    reviewer_id    TEXT PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,
    role           TEXT NOT NULL CHECK (role IN ('reviewer', 'admin')),
    password_hash  TEXT NOT NULL,
    created_by     TEXT,
    activation_hash        TEXT,
    activation_expires_at  TEXT
);
CREATE TABLE IF NOT EXISTS review_pool (
    clip_id       TEXT PRIMARY KEY,
    pseudonym     TEXT NOT NULL UNIQUE,
    household_id  TEXT NOT NULL,
    admitted_at   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS review_pool_household ON review_pool (household_id);
CREATE TABLE IF NOT EXISTS review_considered (
    clip_id  TEXT PRIMARY KEY,
    verdict  TEXT NOT NULL DEFAULT 'unknown'
);
-- How far the sampler has read the clips (by insertion order: SQLite's rowid, PostgreSQL's
-- clip_seq; the column keeps its first name): each pass reads
-- only what came after, in small batches, instead of scanning for clips not considered.
CREATE TABLE IF NOT EXISTS sampler_mark (
    one         INTEGER PRIMARY KEY CHECK (one = 1),
    last_rowid  INTEGER NOT NULL
);
-- How far retention has got per retention choice: cutoffs only move forward, so each
-- run reads only the clips that expired since the last one (by the receipt-time index).
CREATE TABLE IF NOT EXISTS retention_marks (
    retention_days  INTEGER PRIMARY KEY,
    expired_before  TEXT NOT NULL
);
-- Households whose retention was shortened and whose older clips are not all expired yet:
-- written with the setting, cleared once they are; a crash in between is finished by the
-- next retention run, never left to the marks (which are past those clips).
CREATE TABLE IF NOT EXISTS retention_pending (
    household_id  TEXT PRIMARY KEY
);
-- One-off data migrations already done: an open runs each once, not at every start.
CREATE TABLE IF NOT EXISTS migrations (
    name  TEXT PRIMARY KEY
);
CREATE INDEX IF NOT EXISTS households_not_kept ON households (household_id) WHERE keep_recordings = 0;
CREATE TABLE IF NOT EXISTS assignments (
    pseudonym      TEXT PRIMARY KEY,
    clip_id        TEXT NOT NULL,
    household_id   TEXT NOT NULL,
    reviewer_id    TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('open', 'submitted', 'revoked')),
    assigned_at    TEXT NOT NULL,
    corrected      TEXT
);
CREATE INDEX IF NOT EXISTS assignments_household ON assignments (household_id, status);
CREATE TABLE IF NOT EXISTS consent_outbox (
    household_id  TEXT PRIMARY KEY,
    version       INTEGER NOT NULL,
    payload       BLOB NOT NULL,
    published     INTEGER NOT NULL DEFAULT 0
);
-- The publisher asks for unpublished rows on every change and every second: without this
-- it reads every household's signed payload each time.
CREATE INDEX IF NOT EXISTS consent_outbox_unpublished ON consent_outbox (household_id) WHERE published = 0;
-- Audio files whose rows are deleted, until the files are gone too: a crash between the
-- commit and the unlink leaves a row here, finished at the next open. Only releases whose
-- audio was kept as files wrote here; it now lives in clip_audio, deleted with its row.
CREATE TABLE IF NOT EXISTS audio_deletions (
    path  TEXT PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash    TEXT PRIMARY KEY,
    kind          TEXT NOT NULL CHECK (kind IN ('member', 'reviewer')),
    principal_id  TEXT NOT NULL,
    csrf_token    TEXT NOT NULL,
    expires_at    TEXT NOT NULL
);
"""

# PostgreSQL's versions of the registry's schema (review_opt_out/migrations/postgresql/).
POSTGRESQL_VERSIONS = postgresql_versions("review_opt_out")


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
    """Which of a household's recordings: by speaker and by date (all when empty)."""

    device_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


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


class Registry:
    """All consent and review state; every method is one transaction."""

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
        if self._db.dialect == SQLITE:
            self._upgrade_sqlite()
        else:
            migrate_postgresql(self._db, "registry", POSTGRESQL_VERSIONS)
        if not self._db.execute("SELECT 1 FROM migrations WHERE name = 'storage_policy'").fetchone():
            with self.transaction() as db:
                # Households that chose "don't keep" before the clip store read storage_policy
                # (every change since writes both): once, not a write lock over every
                # household at each open.
                db.execute(
                    "INSERT INTO storage_policy SELECT household_id, keep_recordings FROM households WHERE true "
                    "ON CONFLICT (household_id) DO NOTHING"
                )
                # Another process may have opened the same old database at the same moment.
                db.execute("INSERT INTO migrations VALUES ('storage_policy') ON CONFLICT (name) DO NOTHING")
        self._finish_file_deletions([row[0] for row in self._db.execute("SELECT path FROM audio_deletions")])
        # Eligibility's retention cutoff follows this module's clock on both engines.
        self._db.install_cutoff(self._now)

    def _upgrade_sqlite(self) -> None:
        """SQLite's schema, and the column upgrades of databases older releases left."""
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA + audit.SCHEMA + audit.SQLITE_TRIGGERS)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(review_considered)")}
        if "verdict" not in columns:  # a database from before verdicts were recorded
            self._db.execute("ALTER TABLE review_considered ADD COLUMN verdict TEXT NOT NULL DEFAULT 'unknown'")
        if "time_zone" not in {row[1] for row in self._db.execute("PRAGMA table_info(households)")}:
            # A household from before "delete everything I said today" needed its day.
            self._db.execute("ALTER TABLE households ADD COLUMN time_zone TEXT NOT NULL DEFAULT 'UTC'")
        if "role" not in {row[1] for row in self._db.execute("PRAGMA table_info(members)")}:
            # Members from before roles were all made by an operator for their household: owners.
            self._db.execute(
                "ALTER TABLE members ADD COLUMN role TEXT NOT NULL DEFAULT 'owner' CHECK (role IN ('owner', 'member'))"
            )
        if "email_status" not in {row[1] for row in self._db.execute("PRAGMA table_info(members)")}:
            self._members_v3()
        if "created_by" not in {row[1] for row in self._db.execute("PRAGMA table_info(reviewers)")}:
            for column in ("created_by", "activation_hash", "activation_expires_at"):
                self._db.execute(f"ALTER TABLE reviewers ADD COLUMN {column} TEXT")

    def _members_v3(self) -> None:
        """Version 3 (PostgreSQL's 0003.sql): who joined from an invitation link never proved
        the address, and an address is unique per household. SQLite cannot drop a column's
        UNIQUE, so the table is rebuilt (nothing references it) in one transaction."""
        with self.transaction() as db:
            db.execute("ALTER TABLE members RENAME TO members_v2")
            start = SCHEMA.index("CREATE TABLE IF NOT EXISTS members")
            db.execute(SCHEMA[start : SCHEMA.index(";", start)])  # not executescript: it would commit
            db.execute(
                "INSERT INTO members (member_id, household_id, email, display_name, password_hash, role, email_status) "
                "SELECT member_id, household_id, email, display_name, password_hash, role, "
                "CASE WHEN member_id IN (SELECT actor FROM audit_log WHERE action = 'member.join') "
                "THEN 'unverified' ELSE 'verified' END FROM members_v2"
            )
            db.execute("DROP TABLE members_v2")

    def _now(self) -> datetime:
        """The database's clock (taken under the connection's lock: web threads share it)."""
        with self._lock:
            return _now(self._db)

    @property
    def signer(self) -> ConsentSigner:
        """The consent signing key (ReviewError if `earmark-review setup` never made one)."""
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

    # -- households and consent ---------------------------------------------------------

    def create_household(self, household_id: str, name: str, actor: str = "admin", time_zone: str = "UTC") -> Household:
        """A new household: consent version 1, review off unless configured otherwise."""
        allowed = self._default_review_allowed
        zone(time_zone)
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM households WHERE household_id = ?", (household_id,)).fetchone():
                raise ReviewError(f"household {household_id} already exists")
            now = utc_text(self._now())
            db.execute(
                "INSERT INTO households VALUES (?, ?, ?, 1, NULL, 1, ?, ?)",
                (household_id, name, int(allowed), now, time_zone),
            )
            db.execute(
                "INSERT INTO consent_history VALUES (?, 1, ?, ?, 'signup', ?)", (household_id, int(allowed), actor, now)
            )
            self._queue_consent(db, household_id, allowed, 1)
            audit.append(db, actor, "household.create", household_id, review_allowed=allowed)
        return self.household(household_id)

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

    def set_consent(self, household_id: str, allowed: bool, actor: str, channel: Channel) -> Household:
        """Change consent: history, pool purge, assignment revocation, audit, outbox — one transaction."""
        with self.transaction() as db:
            row = db.execute(
                "SELECT review_allowed, consent_version FROM households WHERE household_id = ?", (household_id,)
            ).fetchone()
            if row is None:
                raise NotFound("no such household")
            version = row[1] + 1
            db.execute(
                "UPDATE households SET review_allowed = ?, consent_version = ? WHERE household_id = ?",
                (int(allowed), version, household_id),
            )
            # The cloud's clock: a clip tagged with this version counts only if it arrived after now.
            db.execute(
                "INSERT INTO consent_history VALUES (?, ?, ?, ?, ?, ?)",
                (household_id, version, int(allowed), actor, channel.value, utc_text(self._now())),
            )
            purged = revoked = 0
            if not allowed:
                revoked = db.execute(
                    "UPDATE assignments SET status = 'revoked' WHERE household_id = ? AND status = 'open'",
                    (household_id,),
                ).rowcount
                # What reviewers wrote about this household's speech goes with the consent.
                db.execute(
                    "UPDATE assignments SET corrected = NULL WHERE household_id = ? AND corrected IS NOT NULL",
                    (household_id,),
                )
                purged = db.execute("DELETE FROM review_pool WHERE household_id = ?", (household_id,)).rowcount
            self._queue_consent(db, household_id, allowed, version)
            audit.append(
                db,
                actor,
                "consent.set",
                household_id,
                review_allowed=allowed,
                version=version,
                channel=channel.value,
                purged_from_pool=purged,
                revoked_assignments=revoked,
            )
        _LOGGER.info("household consent v%d review_allowed=%s (%d purged)", version, allowed, purged)
        return self.household(household_id)

    def _queue_consent(self, db: Database, household_id: str, allowed: bool, version: int) -> None:
        state = ConsentState(
            household_id=household_id, review_allowed=allowed, consent_version=version, changed_at=self._now()
        )
        db.execute(
            "INSERT INTO consent_outbox VALUES (?, ?, ?, 0) ON CONFLICT (household_id) DO UPDATE SET "
            "version = excluded.version, payload = excluded.payload, published = 0",
            (household_id, version, self.signer.sign(state)),
        )

    def history(self, household_id: str) -> list[ConsentChange]:
        """The household's consent changes, newest first."""
        with self.reading() as db:
            # Members are recorded by id (names change); people read names.
            rows = db.execute(
                "SELECT c.version, c.review_allowed, COALESCE(m.display_name, c.changed_by), c.channel, c.changed_at "
                "FROM consent_history c LEFT JOIN members m ON m.member_id = c.changed_by "
                "WHERE c.household_id = ? ORDER BY c.version DESC",
                (household_id,),
            ).fetchall()
        return [ConsentChange(r[0], bool(r[1]), r[2], r[3], r[4]) for r in rows]

    def unpublished_consent(self) -> list[tuple[str, int, bytes]]:
        """Consent messages the broker has not acknowledged yet."""
        with self.reading() as db:
            return list(db.execute("SELECT household_id, version, payload FROM consent_outbox WHERE published = 0"))

    def consent_page(self, after_household: str, limit: int = 500) -> list[tuple[str, int, bytes]]:
        """Every household's current signed consent, in pages (republished whenever the broker may have lost it)."""
        with self.reading() as db:
            return list(
                db.execute(
                    "SELECT household_id, version, payload FROM consent_outbox WHERE household_id > ? "
                    "ORDER BY household_id LIMIT ?",
                    (after_household, limit),
                )
            )

    def mark_published(self, household_id: str, version: int) -> None:
        """The broker has this version; a newer one queued meanwhile stays pending."""
        with self.reading() as db:
            db.execute(
                "UPDATE consent_outbox SET published = 1 WHERE household_id = ? AND version = ?",
                (household_id, version),
            )

    def set_retention(self, household_id: str, choice: str, actor: str) -> None:
        """Auto-delete after 3 months, 18 months, or never."""
        if choice not in RETENTION_CHOICES:
            raise ReviewError(f"retention must be one of {sorted(RETENTION_CHOICES)}")
        with self.transaction() as db:
            db.execute(
                "UPDATE households SET retention_days = ? WHERE household_id = ?",
                (RETENTION_CHOICES[choice], household_id),
            )
            audit.append(db, actor, "retention.set", household_id, choice=choice)
            if RETENTION_CHOICES[choice] is not None:
                db.execute("INSERT INTO retention_pending VALUES (?) ON CONFLICT DO NOTHING", (household_id,))
        # Clips older than the new cutoff are behind the retention run's marks: expire them now.
        self._expire_household(household_id, "retention")

    def set_keep_recordings(self, household_id: str, keep: bool, actor: str) -> None:
        """The "don't keep recordings" mode: no new audio is written; clips kept before go at the next retention run."""
        with self.transaction() as db:
            db.execute("UPDATE households SET keep_recordings = ? WHERE household_id = ?", (int(keep), household_id))
            # The clip store reads this at every start, so the next request is already not kept.
            db.execute(
                "INSERT INTO storage_policy VALUES (?, ?) ON CONFLICT (household_id) DO UPDATE SET "
                "keep_audio = excluded.keep_audio",
                (household_id, int(keep)),
            )
            audit.append(db, actor, "keep_recordings.set", household_id, keep=keep)

    # -- the review pool ----------------------------------------------------------------

    def sample(self, fraction: float, limit: int = 10_000, batch: int = 100, pause_seconds: float = 0.005) -> int:
        """Consider up to `limit` clips stored since the last pass; return how many were admitted."""
        return self.sample_pass(fraction, limit, batch, pause_seconds)[0]

    def sample_pass(
        self,
        fraction: float,
        limit: int = 10_000,
        batch: int = 100,
        pause_seconds: float = 0.005,
        yield_ratio: float = 9.0,
    ) -> tuple[int, int]:
        """Consider up to `limit` clips stored since the last pass, in transactions of `batch`
        (at most 1,000: one statement binds two values per clip); admit each eligible one
        with probability `fraction`. Returns (admitted, considered): fewer considered than
        `limit` means the sampler has caught up.

        Each batch reads forward from a high-water mark (the clips' insertion order), so a
        pass costs what is new, never a scan of what was considered. It holds the writer
        lock for one small batch at a time (a few ms at 1M clips) and then leaves it free
        `yield_ratio` times as long (at least `pause_seconds`): the sampler is background
        work, so it takes at most a tenth of the lock and clip saves and opt-outs keep the
        rest (on PostgreSQL, whose round trips make a batch slower, it took 44 % of the
        saves' rate without this; with saves at one commit each, a fifth still cost them a
        third on SQLite). It still considers thousands of clips a second. A clip whose rowid
        SQLite reuses after the newest clip was deleted is never considered: it stays out of
        review, which is the safe side.
        """
        rng = secrets.SystemRandom()
        batch = max(1, min(batch, 1_000))
        admitted = considered = 0
        while considered < limit:
            with self.transaction() as db:
                began = time.monotonic()  # the time it holds the lock, not the wait for it
                mark = db.execute("SELECT last_rowid FROM sampler_mark").fetchone()
                rows = db.execute(
                    f"""
                    SELECT c.{db.clip_order}, c.utterance_id, c.household_id, {VERDICT} AS verdict
                    FROM {JOINS}
                    WHERE c.{db.clip_order} > ? ORDER BY c.{db.clip_order} LIMIT ?
                    """,  # noqa: S608 - only constant SQL is interpolated
                    (0 if mark is None else mark[0], min(batch, limit - considered)),
                ).fetchall()
                if not rows:
                    break
                # One statement for the batch, not one per clip: a round trip each was most
                # of the batch's time (and of the writer lock's) on PostgreSQL.
                fresh = {
                    str(row[0])
                    for row in db.execute(
                        "INSERT INTO review_considered VALUES "  # noqa: S608 - only placeholders are interpolated
                        + ", ".join(["(?, ?)"] * len(rows))
                        + " ON CONFLICT (clip_id) DO NOTHING RETURNING clip_id",
                        [value for row in rows for value in (row[1], row[3])],
                    ).fetchall()
                }
                admitted_now = [
                    (clip_id, secrets.token_urlsafe(16), household_id, self._now().isoformat())
                    for _order, clip_id, household_id, verdict in rows
                    if clip_id in fresh and verdict == "eligible" and rng.random() < fraction
                ]
                db.executemany("INSERT INTO review_pool VALUES (?, ?, ?, ?)", admitted_now)
                in_batch = len(admitted_now)
                db.execute(
                    "INSERT INTO sampler_mark VALUES (1, ?) "
                    "ON CONFLICT (one) DO UPDATE SET last_rowid = excluded.last_rowid",
                    (rows[-1][0],),
                )
                if in_batch:
                    audit.append(db, "sampler", "pool.admit", "-", admitted=in_batch, considered=len(rows))
            admitted += in_batch
            considered += len(rows)
            time.sleep(max(pause_seconds, yield_ratio * (time.monotonic() - began)))
        return admitted, considered

    def verdicts(self) -> collections.Counter[str]:
        """Clips the sampler considered, by verdict: why the ineligible ones were not reviewable."""
        with self.reading() as db:
            return collections.Counter(
                dict(db.execute("SELECT verdict, COUNT(*) FROM review_considered GROUP BY verdict"))
            )

    def verdict(self, clip_id: str) -> str | None:
        """Whether one clip is reviewable right now, and if not, why (None: no such clip)."""
        with self.reading() as db:
            row = db.execute(f"SELECT {VERDICT} FROM {JOINS} WHERE c.utterance_id = ?", (clip_id,)).fetchone()  # noqa: S608
        return None if row is None else str(row[0])

    def pool_households(self) -> dict[str, int]:
        """Pool size per household (for tests and the benchmark)."""
        with self.reading() as db:
            return dict(db.execute("SELECT household_id, COUNT(*) FROM review_pool GROUP BY household_id"))

    def _eligible_clip(self, db: Database, clip_id: str) -> str | None:
        """The clip's household if a reviewer may hear it at this moment, else None."""
        row = db.execute(
            f"""
            SELECT c.household_id FROM {JOINS}
            WHERE c.utterance_id = ? AND {ELIGIBLE}
            """,  # noqa: S608 - only constant SQL is interpolated
            (clip_id,),
        ).fetchone()
        return None if row is None else str(row[0])

    # -- reviewers ----------------------------------------------------------------------

    def add_reviewer(self, name: str, password_hash: str, role: str = "reviewer", actor: str = "operator") -> str:
        """An account with a password the operator set on the server (`earmark-review add-reviewer`:
        the first admin); returns its id (ReviewError if the name is taken). Admins use invite_reviewer."""
        return self._insert_reviewer(name, role, actor, password_hash, None, client="server")

    def invite_reviewer(self, name: str, role: str, actor: str, client: str) -> tuple[str, str]:
        """An account that cannot sign in until its person activates it: (id, one-time activation token).

        Only the token's SHA-256 is stored; it works once, within ACTIVATION_HOURS.
        """
        token = secrets.token_urlsafe(32)
        return self._insert_reviewer(name, role, actor, "", token, client=client), token

    def _insert_reviewer(
        self, name: str, role: str, actor: str, password_hash: str, token: str | None, client: str
    ) -> str:
        if role not in ("reviewer", "admin"):
            raise ReviewError(f"a reviewer's role is reviewer or admin, not {role!r}")
        if not name.strip() or len(name) > 100:
            raise ReviewError("a reviewer's name must be 1-100 characters")
        reviewer_id = secrets.token_hex(8)
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM reviewers WHERE name = ?", (name,)).fetchone():
                raise ReviewError(f"a reviewer named {name!r} already exists")
            expires = None if token is None else (self._now() + ACTIVATION_TIME).isoformat()
            db.execute(
                "INSERT INTO reviewers VALUES (?, ?, ?, ?, ?, ?, ?)",
                (reviewer_id, name, role, password_hash, actor, None if token is None else _sha256(token), expires),
            )
            audit.append(
                db, actor, "reviewer.create", reviewer_id, role=role, created_by=actor, activation=token is not None,
                client=client,
            )  # fmt: skip
        return reviewer_id

    def reviewer_activation(self, token: str) -> dict[str, str]:
        """The name and role an activation link is for, or NotFound if it is unknown, used or expired."""
        with self.reading() as db:
            row = db.execute(
                "SELECT name, role FROM reviewers WHERE activation_hash = ? AND activation_expires_at > ?",
                (_sha256(token), self._now().isoformat()),
            ).fetchone()
        if row is None:
            raise NotFound("this activation link is unknown, used or expired; ask an admin for a new account")
        return {"name": row[0], "role": row[1]}

    def activate_reviewer(self, token: str, password_hash: str, client: str) -> str:
        """Set the password the person chose; the link is spent. Returns the account's id."""
        with self.transaction() as db:
            row = db.execute(
                "SELECT reviewer_id, created_by FROM reviewers WHERE activation_hash = ? AND activation_expires_at > ?",
                (_sha256(token), self._now().isoformat()),
            ).fetchone()
            if row is None:
                raise NotFound("this activation link is unknown, used or expired; ask an admin for a new account")
            db.execute(
                "UPDATE reviewers SET password_hash = ?, activation_hash = NULL, activation_expires_at = NULL "
                "WHERE reviewer_id = ?",
                (password_hash, row[0]),
            )
            # With the creating admin and the address: an activation by the admin who holds the link
            # shows as the same address soon after the creation entry.
            audit.append(db, row[0], "reviewer.activate", row[0], created_by=row[1], client=client)
        return str(row[0])

    def reviewer_role(self, reviewer_id: str) -> str | None:
        """'reviewer' or 'admin', or None if there is no such account (any more)."""
        with self.reading() as db:
            row = db.execute("SELECT role FROM reviewers WHERE reviewer_id = ?", (reviewer_id,)).fetchone()
        return None if row is None else str(row[0])

    def reviewers(self) -> list[dict[str, Any]]:
        """Every reviewer account, with how many clips each has open and submitted."""
        with self.reading() as db:
            rows = db.execute(
                "SELECT r.reviewer_id, r.name, r.role, "
                "(SELECT count(*) FROM assignments a WHERE a.reviewer_id = r.reviewer_id AND a.status = 'open'), "
                "(SELECT count(*) FROM assignments a WHERE a.reviewer_id = r.reviewer_id AND a.status = 'submitted'), "
                "r.password_hash <> '', COALESCE(c.name, r.created_by) "
                "FROM reviewers r LEFT JOIN reviewers c ON c.reviewer_id = r.created_by ORDER BY r.name"
            ).fetchall()
        return [
            {"id": r[0], "name": r[1], "role": r[2], "open": r[3], "submitted": r[4], "activated": bool(r[5]),
             "created_by": r[6]}
            for r in rows
        ]  # fmt: skip

    def remove_reviewer(self, reviewer_id: str, actor: str) -> None:
        """Delete a reviewer account: its sessions end and its open assignments are revoked."""
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM reviewers WHERE reviewer_id = ?", (reviewer_id,)).fetchone() is None:
                raise NotFound("no such reviewer")
            db.execute("DELETE FROM sessions WHERE kind = 'reviewer' AND principal_id = ?", (reviewer_id,))
            db.execute(
                "UPDATE assignments SET status = 'revoked' WHERE reviewer_id = ? AND status = 'open'", (reviewer_id,)
            )
            db.execute("DELETE FROM reviewers WHERE reviewer_id = ?", (reviewer_id,))
            audit.append(db, actor, "reviewer.remove", reviewer_id)

    def assigned_transcript(self, reviewer_id: str, pseudonym: str) -> str:
        """The recognizer's text of an open, still-eligible assignment: what the reviewer corrects."""
        with self.reading() as db:
            row = db.execute(
                "SELECT a.clip_id FROM assignments a JOIN review_pool p ON p.pseudonym = a.pseudonym "
                "WHERE a.pseudonym = ? AND a.reviewer_id = ? AND a.status = 'open'",
                (pseudonym, reviewer_id),
            ).fetchone()
            if row is None or self._eligible_clip(db, row[0]) is None:
                raise NotFound("no such assignment")
            text = db.execute("SELECT transcript FROM clips WHERE utterance_id = ?", (row[0],)).fetchone()
        return "" if text is None or text[0] is None else str(text[0])

    def next_assignment(self, reviewer_id: str) -> str | None:
        """The pseudonym of the reviewer's open assignment, or a newly assigned one, or None."""
        with self.transaction() as db:
            row = db.execute(
                "SELECT a.pseudonym FROM assignments a JOIN review_pool p ON p.pseudonym = a.pseudonym "
                "WHERE a.reviewer_id = ? AND a.status = 'open' LIMIT 1",
                (reviewer_id,),
            ).fetchone()
            if row is not None:
                return str(row[0])
            candidates = db.execute(
                "SELECT p.pseudonym, p.clip_id, p.household_id FROM review_pool p "
                "WHERE p.pseudonym NOT IN (SELECT pseudonym FROM assignments) ORDER BY p.admitted_at LIMIT 50"
            ).fetchall()
            for pseudonym, clip_id, household_id in candidates:
                if self._eligible_clip(db, clip_id) is None:
                    continue  # re-checked: eligibility can change after admission
                db.execute(
                    "INSERT INTO assignments VALUES (?, ?, ?, ?, 'open', ?, NULL)",
                    (pseudonym, clip_id, household_id, reviewer_id, self._now().isoformat()),
                )
                audit.append(db, reviewer_id, "review.assign", pseudonym)
                return str(pseudonym)
            return None

    def reviewer_audio(self, reviewer_id: str, pseudonym: str) -> bytes:
        """The audio (WAV) of an assigned clip, only if the clip is eligible at this moment:
        checked and read in one transaction, so no opt-out can fall between the two."""
        with self.transaction() as db:
            row = db.execute(
                "SELECT a.clip_id FROM assignments a JOIN review_pool p ON p.pseudonym = a.pseudonym "
                "WHERE a.pseudonym = ? AND a.reviewer_id = ? AND a.status = 'open'",
                (pseudonym, reviewer_id),
            ).fetchone()
            eligible = self._eligible_clip(db, row[0]) if row is not None else None
            pcm = None
            if eligible is not None:
                pcm = db.execute("SELECT pcm FROM clip_audio WHERE utterance_id = ?", (row[0],)).fetchone()
            audit.append(db, reviewer_id, "review.fetch" if pcm else "review.fetch_refused", pseudonym)
        if pcm is None:
            # One answer for "not yours", "no such id" and "no longer eligible": ids cannot be probed.
            raise NotFound("no such assignment")
        return wav_bytes(bytes(pcm[0]))

    def submit(self, reviewer_id: str, pseudonym: str, transcript: str) -> None:
        """Record a corrected transcript for an open, still-eligible assignment."""
        with self.transaction() as db:
            row = db.execute(
                "SELECT clip_id FROM assignments WHERE pseudonym = ? AND reviewer_id = ? AND status = 'open'",
                (pseudonym, reviewer_id),
            ).fetchone()
            if row is None or self._eligible_clip(db, row[0]) is None:
                audit.append(db, reviewer_id, "review.submit_refused", pseudonym)
                raise NotFound("no such assignment")
            db.execute(
                "UPDATE assignments SET status = 'submitted', corrected = ? WHERE pseudonym = ?",
                (transcript, pseudonym),
            )
            audit.append(db, reviewer_id, "review.submit", pseudonym)

    # -- a household's recordings -------------------------------------------------------

    def recordings(
        self,
        household_id: str,
        which: RecordingFilter | None = None,
        *,
        after: tuple[str, str] | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """The household's clips, newest first, `limit` of them after the (captured_at, id)
        cursor `after` (transcripts included: it is their own data).

        `may_be_reviewed` is the one eligibility rule's answer for the clip now: only then
        can it be drawn into the review sample.
        """
        condition, params = _recording_filter(household_id, which or RecordingFilter())
        if after is not None:
            condition += " AND (c.capture_started_at, c.utterance_id) < (?, ?)"
            params += list(after)
        with self.reading() as db:
            # Fixed SQL; every value is bound.
            query = (
                "SELECT c.utterance_id, c.device_id, c.capture_started_at, c.duration_seconds, c.transcript, "  # noqa: S608
                f"c.review_allowed, c.audio_bytes IS NOT NULL, {ELIGIBLE} FROM {JOINS} WHERE {condition} "
                "ORDER BY c.capture_started_at DESC, c.utterance_id DESC"
            )
            if limit is not None:  # neither engine takes one spelling of "no limit"
                query += " LIMIT ?"
                params.append(limit)
            rows = db.execute(query, params).fetchall()
        return [
            {
                "id": r[0],
                "device_id": r[1],
                "captured_at": r[2],
                "duration_seconds": r[3],
                "transcript": r[4],
                "review_allowed_at_capture": bool(r[5]),
                "has_audio": bool(r[6]),
                "may_be_reviewed": bool(r[7]),
            }
            for r in rows
        ]

    def count_recordings(self, household_id: str, which: RecordingFilter) -> int:
        """How many of the household's clips `which` matches: what a delete of it would remove."""
        condition, params = _recording_filter(household_id, which)
        with self.reading() as db:
            return int(db.execute(f"SELECT count(*) FROM clips c WHERE {condition}", params).fetchone()[0])  # noqa: S608

    def household_devices(self, household_id: str) -> list[str]:
        """The speakers enrolled in a household, by id."""
        with self.reading() as db:
            rows = db.execute(
                "SELECT device_id FROM devices WHERE household_id = ? ORDER BY device_id", (household_id,)
            )
            return [str(r[0]) for r in rows]

    def recording_audio(self, household_id: str, clip_id: str) -> bytes:
        """A household's own clip audio as WAV (NotFound for anyone else's)."""
        with self.reading() as db:
            row = db.execute(
                "SELECT a.pcm FROM clips c JOIN clip_audio a ON a.utterance_id = c.utterance_id "
                "WHERE c.utterance_id = ? AND c.household_id = ?",
                (clip_id, household_id),
            ).fetchone()
        if row is None:
            raise NotFound("no such recording")
        return wav_bytes(bytes(row[0]))

    def delete(self, household_id: str, actor: str, *, clip_id: str | None = None,
               since: datetime | None = None, until: datetime | None = None, device_id: str | None = None,
               expected_count: int | None = None) -> int:  # fmt: skip
        """Delete one clip, or the household's clips a filter matches (none: all of them):
        rows, pool, assignments, audio.

        Returns how many clips went. With `expected_count` (what the member confirmed),
        nothing is deleted if the filter now matches another number (CountChanged). The
        audio files are recorded in the same transaction and unlinked after it commits; a
        crash in between is finished at the next open.
        """
        condition, params = _recording_filter(household_id, RecordingFilter(device_id, since, until))
        if clip_id is not None:
            condition += " AND c.utterance_id = ?"
            params.append(clip_id)
        with self.transaction() as db:
            rows = db.execute(f"SELECT utterance_id FROM clips c WHERE {condition}", params).fetchall()  # noqa: S608
            if expected_count is not None and len(rows) != expected_count:
                raise CountChanged(len(rows))
            _delete_rows(db, [row[0] for row in rows])
            audit.append(db, actor, "recordings.delete", household_id, count=len(rows), clip_id=clip_id)
        return len(rows)

    def device_household(self, device_id: str) -> str | None:
        """The household a device is enrolled in, as the cloud knows it."""
        with self.reading() as db:
            row = db.execute("SELECT household_id FROM devices WHERE device_id = ?", (device_id,)).fetchone()
        return None if row is None else str(row[0])

    def delete_spoken(self, device_id: str, command_id: str, *, today: bool) -> int:
        """A spoken "delete what I just said" (today=False) or "delete everything I said
        today" heard by `device_id`, whose own utterance is `command_id`.

        The command goes too, stored yet or not (a tombstone keeps a later save from writing
        it); the same command delivered twice deletes nothing more. "Just said" is this
        device's last request (one with speech, received in the JUST_SAID_SECONDS before the
        command, by the cloud's clock); "today" is the household's day in its own time zone,
        matched as in `delete`, and also covers requests still on their way. Returns how
        many requests went, the command always among them.
        """
        actor = f"voice:{device_id}"
        with self.transaction() as db:
            now = _now(db)  # after the writer lock: every receipt stamped before it is earlier
            found = db.execute("SELECT household_id FROM devices WHERE device_id = ?", (device_id,)).fetchone()
            if found is None:
                raise NotFound("no such device")
            household_id = str(found[0])
            tz_row = db.execute("SELECT time_zone FROM households WHERE household_id = ?", (household_id,)).fetchone()
            if tz_row is None:
                raise NotFound("no such household")
            # A tombstone outlives any stream and outbox; then it goes (a device adds a few a minute).
            db.execute("DELETE FROM forgotten WHERE forgotten_at < ?", (utc_text(now - _TOMBSTONE_LIFETIME),))
            fresh = db.execute(
                "INSERT INTO forgotten VALUES (?, ?, ?) ON CONFLICT DO NOTHING", (command_id, device_id, utc_text(now))
            ).rowcount
            if not fresh:
                return 0  # a redelivered command: done already
            command = db.execute(
                "SELECT utterance_id FROM clips WHERE utterance_id = ? AND device_id = ? AND household_id = ?",
                (command_id, device_id, household_id),
            ).fetchone()
            in_flight: list[str] = []
            if today:
                midnight = now.astimezone(zone(str(tz_row[0]))).replace(hour=0, minute=0, second=0, microsecond=0)
                since = utc_text(midnight)
                ids = [
                    str(row[0])
                    for row in db.execute(
                        "SELECT utterance_id FROM clips WHERE household_id = ? "
                        "AND (capture_started_at >= ? OR received_at >= ?)",
                        (household_id, since, since),
                    )
                ]
                # Requests still on their way are decided when stored (pipeline.store): by the
                # first receipt any worker recorded, or a capture earlier today.
                db.execute(
                    "INSERT INTO forgotten_before VALUES (?, ?, ?) ON CONFLICT (household_id) DO UPDATE SET "
                    "received_before = excluded.received_before, captured_since = excluded.captured_since "
                    "WHERE excluded.received_before > forgotten_before.received_before",
                    (household_id, utc_text(now), since),
                )
            else:
                ids, in_flight = _just_said(db, device_id, household_id, command_id, now)
                db.executemany(
                    "INSERT INTO forgotten VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                    [(utterance_id, device_id, utc_text(now)) for utterance_id in in_flight],
                )
            ids = list(dict.fromkeys([*ids, *([str(command[0])] if command else [])]))
            _delete_rows(db, ids)
            audit.append(
                db, actor, "recordings.delete", household_id, count=len(ids) + len(in_flight), channel="voice",
                scope="today" if today else "last_request",
            )  # fmt: skip
        return len(ids) + len(in_flight) + (command is None)

    def _finish_file_deletions(self, paths: list[str]) -> None:
        """Audio files an earlier release deleted the rows of but crashed before unlinking."""
        if not paths:
            return  # the usual case: no write transaction at open
        for path in paths:
            (self._data_dir / path).unlink(missing_ok=True)
        with self.transaction() as db:
            db.executemany("DELETE FROM audio_deletions WHERE path = ?", [(path,) for path in paths])

    def apply_retention(self, actor: str = "retention") -> int:
        """Delete what households' auto-delete and "don't keep" settings say must go; how many went.

        Reads only what can be due: the clips of "don't keep" households, and per retention
        choice the clips received between the last run's cutoff and this one's (by the
        receipt-time index). A household that shortens its retention has its older clips
        expired at that moment (`set_retention`), so the marks never skip one.
        """
        now = self._now()
        with self.reading() as db:
            pending = [str(row[0]) for row in db.execute("SELECT household_id FROM retention_pending")]
        deleted = sum(self._expire_household(household_id, actor) for household_id in pending)
        with self.reading() as db:
            due = db.execute(
                "SELECT h.household_id, c.utterance_id FROM households h "
                "JOIN clips c ON c.household_id = h.household_id WHERE h.keep_recordings = 0"
            ).fetchall()
            marks = dict(db.execute("SELECT retention_days, expired_before FROM retention_marks").fetchall())
            choices = [
                r[0]
                for r in db.execute("SELECT DISTINCT retention_days FROM households WHERE retention_days IS NOT NULL")
            ]
            cutoffs = {days: utc_text(now - timedelta(days=days)) for days in choices}
            for days, cutoff in cutoffs.items():
                due += db.execute(
                    "SELECT c.household_id, c.utterance_id FROM clips c JOIN households h "
                    "ON h.household_id = c.household_id WHERE c.received_at >= ? AND c.received_at < ? "
                    "AND h.retention_days = ? AND h.keep_recordings = 1",
                    (marks.get(days, ""), cutoff, days),
                ).fetchall()
        deleted += sum(self.delete(household_id, actor, clip_id=clip_id) for household_id, clip_id in due)
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO retention_marks VALUES (?, ?) ON CONFLICT (retention_days) DO UPDATE SET "
                "expired_before = excluded.expired_before",
                list(cutoffs.items()),
            )
        return deleted

    def _expire_household(self, household_id: str, actor: str) -> int:
        """Delete a household's clips past its retention now (by the household + receipt-time
        index), then clear its pending mark."""
        household = self.household(household_id)
        deleted = 0
        days = household.retention_days
        if days is not None:
            cutoff = utc_text(self._now() - timedelta(days=days))
            with self.reading() as db:
                rows = db.execute(
                    "SELECT utterance_id FROM clips WHERE household_id = ? AND received_at < ?", (household_id, cutoff)
                ).fetchall()
            deleted = sum(self.delete(household_id, actor, clip_id=row[0]) for row in rows)
        with self.transaction() as db:
            # Only if the retention is still the one just applied: a shorter one set meanwhile
            # (by another process, whose own expiry may have died) stays pending.
            db.execute(
                "DELETE FROM retention_pending WHERE household_id = ? AND household_id IN "
                "(SELECT household_id FROM households WHERE COALESCE(retention_days, -1) = ?)",
                (household_id, -1 if days is None else days),
            )
        return deleted


def _recording_filter(household_id: str, which: RecordingFilter) -> tuple[str, list[Any]]:
    """SQL over `clips c` for a household's recordings that `which` matches.

    A date range matches the device's capture time *or* the cloud's receipt time: a
    device's wrong clock never keeps a recording out of "delete today".
    """
    where, params = ["c.household_id = ?"], [household_id]
    if which.device_id is not None:
        where.append("c.device_id = ?")
        params.append(which.device_id)
    if which.since is not None or which.until is not None:
        ranges = []
        for column in ("c.capture_started_at", "c.received_at"):
            bounds = [f"{column} >= ?"] * (which.since is not None) + [f"{column} < ?"] * (which.until is not None)
            ranges.append("(" + " AND ".join(bounds) + ")")
            params += [utc_text(t) for t in (which.since, which.until) if t is not None]
        where.append("(" + " OR ".join(ranges) + ")")
    return " AND ".join(where), params


def zone(name: str) -> ZoneInfo:
    """A household's time zone by its IANA name, or ReviewError."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise ReviewError(f"unknown time zone {name[:64]!r} (use an IANA name such as Europe/Berlin)") from err


def _just_said(
    db: Database, device_id: str, household_id: str, command_id: str, now: datetime
) -> tuple[list[str], list[str]]:
    """The device's last request before the command (one with speech, received within
    JUST_SAID): ([its id] if it is stored, []) or ([], [its id]) if it is still on its way
    to whichever worker will store it.

    Receipt times are the utterance ledger's, the first any worker recorded (a stored clip
    carries it too): a request sent again after the command is still one said before it.
    """
    command = db.execute("SELECT received_at FROM utterances WHERE utterance_id = ?", (command_id,)).fetchone()
    if command is None:
        command = db.execute("SELECT received_at FROM clips WHERE utterance_id = ?", (command_id,)).fetchone()
    before = str(command[0]) if command is not None else utc_text(now)
    window = (device_id, household_id, command_id, before, utc_text(now - JUST_SAID))
    stored = db.execute(
        "SELECT utterance_id, received_at FROM clips WHERE device_id = ? AND household_id = ? "
        "AND utterance_id != ? AND received_at <= ? AND received_at >= ? "
        "AND end_reason NOT IN ('no_speech', 'muted') ORDER BY received_at DESC LIMIT 1",
        window,
    ).fetchone()
    pending = db.execute(
        "SELECT utterance_id, received_at FROM utterances WHERE device_id = ? AND household_id = ? "
        "AND utterance_id != ? AND received_at <= ? AND received_at >= ? AND settled = 0 "
        "ORDER BY received_at DESC LIMIT 1",
        window,
    ).fetchone()
    if pending is not None and (stored is None or str(pending[1]) > str(stored[1])):
        return [], [str(pending[0])]
    return ([str(stored[0])] if stored is not None else []), []


def _sha256(token: str) -> str:
    """What is stored of a one-time token: its SHA-256, never the token."""
    return hashlib.sha256(token.encode()).hexdigest()


def _delete_rows(db: Database, ids: list[str]) -> None:
    """Delete these clips, their audio and everything review holds of them, in the caller's
    transaction: row and audio go in the same commit."""
    for chunk_start in range(0, len(ids), 500):
        batch = ids[chunk_start : chunk_start + 500]
        marks = ",".join("?" * len(batch))
        db.execute(f"DELETE FROM assignments WHERE clip_id IN ({marks})", batch)  # noqa: S608
        db.execute(f"DELETE FROM review_pool WHERE clip_id IN ({marks})", batch)  # noqa: S608
        db.execute(f"DELETE FROM review_considered WHERE clip_id IN ({marks})", batch)  # noqa: S608
        db.execute(f"DELETE FROM clip_audio WHERE utterance_id IN ({marks})", batch)  # noqa: S608
        db.execute(f"DELETE FROM clips WHERE utterance_id IN ({marks})", batch)  # noqa: S608

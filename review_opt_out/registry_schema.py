"""The registry's tables: SQLite's schema and upgrades, PostgreSQL's versioned files."""

from __future__ import annotations

from pipeline.database import Database, postgresql_versions
from review_opt_out import audit

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
CREATE INDEX IF NOT EXISTS members_by_email ON members (email);
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


def upgrade_sqlite(db: Database) -> None:
    """SQLite's schema, and the column upgrades of databases older releases left (at open,
    before any other thread uses the connection)."""
    db.execute("PRAGMA foreign_keys=ON")
    db.executescript(SCHEMA + audit.SCHEMA + audit.SQLITE_TRIGGERS)
    columns = {row[1] for row in db.execute("PRAGMA table_info(review_considered)")}
    if "verdict" not in columns:  # a database from before verdicts were recorded
        db.execute("ALTER TABLE review_considered ADD COLUMN verdict TEXT NOT NULL DEFAULT 'unknown'")
    if "time_zone" not in {row[1] for row in db.execute("PRAGMA table_info(households)")}:
        # A household from before "delete everything I said today" needed its day.
        db.execute("ALTER TABLE households ADD COLUMN time_zone TEXT NOT NULL DEFAULT 'UTC'")
    if "role" not in {row[1] for row in db.execute("PRAGMA table_info(members)")}:
        # Members from before roles were all made by an operator for their household: owners.
        db.execute(
            "ALTER TABLE members ADD COLUMN role TEXT NOT NULL DEFAULT 'owner' CHECK (role IN ('owner', 'member'))"
        )
    if "email_status" not in {row[1] for row in db.execute("PRAGMA table_info(members)")}:
        _members_v3(db)
    if "created_by" not in {row[1] for row in db.execute("PRAGMA table_info(reviewers)")}:
        for column in ("created_by", "activation_hash", "activation_expires_at"):
            db.execute(f"ALTER TABLE reviewers ADD COLUMN {column} TEXT")


def _members_v3(db: Database) -> None:
    """Version 3 (PostgreSQL's 0003.sql): who joined from an invitation link never proved
    the address, and an address is unique per household. SQLite cannot drop a column's
    UNIQUE, so the table is rebuilt (nothing references it) in one transaction."""
    with db.writing() as tx:
        tx.execute("ALTER TABLE members RENAME TO members_v2")
        start = SCHEMA.index("CREATE TABLE IF NOT EXISTS members")
        tx.execute(SCHEMA[start : SCHEMA.index(";", start)])  # not executescript: it would commit
        tx.execute(
            "INSERT INTO members (member_id, household_id, email, display_name, password_hash, role, email_status) "
            "SELECT member_id, household_id, email, display_name, password_hash, role, "
            "CASE WHEN member_id IN (SELECT actor FROM audit_log WHERE action = 'member.join') "
            "THEN 'unverified' ELSE 'verified' END FROM members_v2"
        )
        tx.execute("DROP TABLE members_v2")  # and the index it took along: made again for the new table
        index = SCHEMA.index("CREATE INDEX IF NOT EXISTS members_by_email")
        tx.execute(SCHEMA[index : SCHEMA.index(";", index)])

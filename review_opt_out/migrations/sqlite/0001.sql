-- The registry's schema, SQLite version 1 (PostgreSQL's 0001.sql). Applied once per
-- database, in order, by pipeline.schema_versions.migrate; never edit a version once
-- written: add the next.
-- Every statement creates only what is missing: a database an older release left is
-- mapped onto version 0 when it has some of this already (review_opt_out.registry_schema).
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
CREATE TABLE IF NOT EXISTS members (
    member_id      TEXT PRIMARY KEY,
    household_id   TEXT NOT NULL REFERENCES households (household_id),
    email          TEXT NOT NULL UNIQUE,
    display_name   TEXT NOT NULL,
    password_hash  TEXT NOT NULL,
    role           TEXT NOT NULL DEFAULT 'owner' CHECK (role IN ('owner', 'member'))
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
CREATE TABLE IF NOT EXISTS reviewers (
    reviewer_id    TEXT PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,
    role           TEXT NOT NULL CHECK (role IN ('reviewer', 'admin')),
    password_hash  TEXT NOT NULL
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
-- The append-only, hash-chained audit log (review_opt_out.audit).
CREATE TABLE IF NOT EXISTS audit_log (
    seq        INTEGER PRIMARY KEY,
    at         TEXT NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    detail     TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
-- The database itself refuses to change or remove an entry, whoever connects.
CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
-- Eligibility's cutoff(retention_days) is a Python function on SQLite
-- (pipeline.database.Database.install_cutoff), installed on each connection.

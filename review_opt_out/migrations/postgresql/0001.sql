-- The registry's schema, PostgreSQL version 1. Applied once per database, in order, by
-- pipeline.database.migrate_postgresql; never edit a version once written: add the next.
-- The registry's SQLite schema as of this version, the append-only audit log, and
-- eligibility's cutoff(): days counted in UTC from the clock the registry sets for its
-- session (Database.install_cutoff), else now().
CREATE TABLE IF NOT EXISTS households (
    household_id     TEXT COLLATE "C" PRIMARY KEY,
    name             TEXT COLLATE "C" NOT NULL,
    review_allowed   BIGINT NOT NULL CHECK (review_allowed IN (0, 1)),
    consent_version  BIGINT NOT NULL CHECK (consent_version >= 1),
    retention_days   BIGINT CHECK (retention_days IS NULL OR retention_days > 0),
    keep_recordings  BIGINT NOT NULL DEFAULT 1 CHECK (keep_recordings IN (0, 1)),
    created_at       TEXT COLLATE "C" NOT NULL,
    time_zone        TEXT COLLATE "C" NOT NULL DEFAULT 'UTC'
);
CREATE TABLE IF NOT EXISTS members (
    member_id      TEXT COLLATE "C" PRIMARY KEY,
    household_id   TEXT COLLATE "C" NOT NULL REFERENCES households (household_id),
    email          TEXT COLLATE "C" NOT NULL UNIQUE,
    display_name   TEXT COLLATE "C" NOT NULL,
    password_hash  TEXT COLLATE "C" NOT NULL,
    role           TEXT COLLATE "C" NOT NULL DEFAULT 'owner' CHECK (role IN ('owner', 'member'))
);
CREATE TABLE IF NOT EXISTS invitations (
    token_hash    TEXT COLLATE "C" PRIMARY KEY,
    household_id  TEXT COLLATE "C" NOT NULL REFERENCES households (household_id),
    email         TEXT COLLATE "C" NOT NULL,
    display_name  TEXT COLLATE "C" NOT NULL,
    role          TEXT COLLATE "C" NOT NULL CHECK (role IN ('owner', 'member')),
    expires_at    TEXT COLLATE "C" NOT NULL,
    -- Per household: one household's invitation never replaces another's.
    UNIQUE (household_id, email)
);
CREATE TABLE IF NOT EXISTS consent_history (
    household_id    TEXT COLLATE "C" NOT NULL REFERENCES households (household_id),
    version         BIGINT NOT NULL,
    review_allowed  BIGINT NOT NULL,
    changed_by      TEXT COLLATE "C" NOT NULL,
    channel         TEXT COLLATE "C" NOT NULL CHECK (channel IN ('signup', 'app', 'voice', 'admin')),
    changed_at      TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (household_id, version)
);
CREATE TABLE IF NOT EXISTS reviewers (
    reviewer_id    TEXT COLLATE "C" PRIMARY KEY,
    name           TEXT COLLATE "C" NOT NULL UNIQUE,
    role           TEXT COLLATE "C" NOT NULL CHECK (role IN ('reviewer', 'admin')),
    password_hash  TEXT COLLATE "C" NOT NULL
);
CREATE TABLE IF NOT EXISTS review_pool (
    clip_id       TEXT COLLATE "C" PRIMARY KEY,
    pseudonym     TEXT COLLATE "C" NOT NULL UNIQUE,
    household_id  TEXT COLLATE "C" NOT NULL,
    admitted_at   TEXT COLLATE "C" NOT NULL
);
CREATE INDEX IF NOT EXISTS review_pool_household ON review_pool (household_id);
CREATE TABLE IF NOT EXISTS review_considered (
    clip_id  TEXT COLLATE "C" PRIMARY KEY,
    verdict  TEXT COLLATE "C" NOT NULL DEFAULT 'unknown'
);
-- How far the sampler has read the clips (by insertion order: SQLite's rowid, PostgreSQL's
-- clip_seq; the column keeps its first name): each pass reads
-- only what came after, in small batches, instead of scanning for clips not considered.
CREATE TABLE IF NOT EXISTS sampler_mark (
    one         BIGINT PRIMARY KEY CHECK (one = 1),
    last_rowid  BIGINT NOT NULL
);
-- How far retention has got per retention choice: cutoffs only move forward, so each
-- run reads only the clips that expired since the last one (by the receipt-time index).
CREATE TABLE IF NOT EXISTS retention_marks (
    retention_days  BIGINT PRIMARY KEY,
    expired_before  TEXT COLLATE "C" NOT NULL
);
-- One-off data migrations already done: an open runs each once, not at every start.
CREATE TABLE IF NOT EXISTS migrations (
    name  TEXT COLLATE "C" PRIMARY KEY
);
CREATE INDEX IF NOT EXISTS households_not_kept ON households (household_id) WHERE keep_recordings = 0;
CREATE TABLE IF NOT EXISTS assignments (
    pseudonym      TEXT COLLATE "C" PRIMARY KEY,
    clip_id        TEXT COLLATE "C" NOT NULL,
    household_id   TEXT COLLATE "C" NOT NULL,
    reviewer_id    TEXT COLLATE "C" NOT NULL,
    status         TEXT COLLATE "C" NOT NULL CHECK (status IN ('open', 'submitted', 'revoked')),
    assigned_at    TEXT COLLATE "C" NOT NULL,
    corrected      TEXT COLLATE "C"
);
CREATE INDEX IF NOT EXISTS assignments_household ON assignments (household_id, status);
CREATE TABLE IF NOT EXISTS consent_outbox (
    household_id  TEXT COLLATE "C" PRIMARY KEY,
    version       BIGINT NOT NULL,
    payload       BYTEA NOT NULL,
    published     BIGINT NOT NULL DEFAULT 0
);
-- The publisher asks for unpublished rows on every change and every second: without this
-- it reads every household's signed payload each time.
CREATE INDEX IF NOT EXISTS consent_outbox_unpublished ON consent_outbox (household_id) WHERE published = 0;
-- Audio files whose rows are deleted, until the files are gone too: a crash between the
-- commit and the unlink leaves a row here, finished at the next open.
CREATE TABLE IF NOT EXISTS audio_deletions (
    path  TEXT COLLATE "C" PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash    TEXT COLLATE "C" PRIMARY KEY,
    kind          TEXT COLLATE "C" NOT NULL CHECK (kind IN ('member', 'reviewer')),
    principal_id  TEXT COLLATE "C" NOT NULL,
    csrf_token    TEXT COLLATE "C" NOT NULL,
    expires_at    TEXT COLLATE "C" NOT NULL
);

CREATE TABLE IF NOT EXISTS audit_log (
    seq        BIGINT PRIMARY KEY,
    at         TEXT COLLATE "C" NOT NULL,
    actor      TEXT COLLATE "C" NOT NULL,
    action     TEXT COLLATE "C" NOT NULL,
    subject    TEXT COLLATE "C" NOT NULL,
    detail     TEXT COLLATE "C" NOT NULL,
    prev_hash  TEXT COLLATE "C" NOT NULL,
    hash       TEXT COLLATE "C" NOT NULL
);

CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

CREATE OR REPLACE FUNCTION cutoff(retention_days BIGINT) RETURNS TEXT LANGUAGE sql STABLE AS $$
SELECT CASE WHEN retention_days IS NULL THEN '0000' ELSE to_char(
    (COALESCE(NULLIF(current_setting('earmark.now', true), '')::timestamptz, now()) AT TIME ZONE 'UTC')
     - make_interval(days => retention_days::int),
    'YYYY-MM-DD"T"HH24:MI:SS.US') || '+00:00' END
$$;

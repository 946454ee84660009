-- The clip store's schema, SQLite version 1 (PostgreSQL's 0001.sql, which adds clip_seq:
-- the insertion order SQLite has as rowid). Applied once per database, in order, by
-- pipeline.schema_versions.migrate; never edit a version once written: add the next.
-- Every statement creates only what is missing: a database an older release left is
-- mapped onto version 0 when it has some of this already (pipeline.clip_schema).
CREATE TABLE IF NOT EXISTS devices (
        device_id     TEXT PRIMARY KEY,
        household_id  TEXT NOT NULL
    );
-- What the clip store must honour for a household; the consent side writes it.
CREATE TABLE IF NOT EXISTS storage_policy (
        household_id  TEXT PRIMARY KEY,
        keep_audio    INTEGER NOT NULL CHECK (keep_audio IN (0, 1))
    );
CREATE TABLE IF NOT EXISTS clips (
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
CREATE INDEX IF NOT EXISTS clips_household ON clips (household_id, capture_started_at);
CREATE INDEX IF NOT EXISTS clips_received ON clips (received_at);
-- Utterances their household deleted before they were stored (a spoken "delete what I
-- just said" can overtake its own clip's save): such a clip is never written. Keyed by
-- device too, so no one can veto another device's clip by naming its id.
CREATE TABLE IF NOT EXISTS forgotten (
        utterance_id  TEXT NOT NULL,
        device_id     TEXT NOT NULL,
        forgotten_at  TEXT NOT NULL,
        PRIMARY KEY (utterance_id, device_id)
    );
CREATE INDEX IF NOT EXISTS forgotten_at ON forgotten (forgotten_at);
-- "Delete everything I said today" covers requests still on their way (another
-- speaker's, a resent outbox): nothing received before this moment is stored any more.
CREATE TABLE IF NOT EXISTS forgotten_before (
        household_id   TEXT PRIMARY KEY,
        received_before TEXT NOT NULL
    );
CREATE INDEX IF NOT EXISTS clips_device ON clips (device_id, received_at);
-- Retention: a household's clips past its cutoff, found without reading the others.
CREATE INDEX IF NOT EXISTS clips_household_received ON clips (household_id, received_at);

-- The clip store's schema, PostgreSQL version 1. Applied once per database, in order, by
-- pipeline.database.migrate_postgresql; never edit a version once written: add the next.
-- SQLite's version 4 (pipeline/store.py), plus clip_seq: the insertion order SQLite has as rowid.
CREATE TABLE IF NOT EXISTS devices (
        device_id     TEXT COLLATE "C" PRIMARY KEY,
        household_id  TEXT COLLATE "C" NOT NULL
    );
CREATE TABLE IF NOT EXISTS storage_policy (
        household_id  TEXT COLLATE "C" PRIMARY KEY,
        keep_audio    BIGINT NOT NULL CHECK (keep_audio IN (0, 1))
    );
CREATE TABLE IF NOT EXISTS clips (
        utterance_id        TEXT COLLATE "C" PRIMARY KEY,
        device_id           TEXT COLLATE "C" NOT NULL,
        household_id        TEXT COLLATE "C" NOT NULL,
        capture_started_at  TEXT COLLATE "C" NOT NULL,
        received_at         TEXT COLLATE "C" NOT NULL,
        stored_at           TEXT COLLATE "C" NOT NULL,
        duration_seconds    DOUBLE PRECISION NOT NULL,
        transcript          TEXT COLLATE "C" NOT NULL,
        end_reason          TEXT COLLATE "C" NOT NULL,
        status              TEXT COLLATE "C" NOT NULL CHECK (status IN ('complete', 'incomplete', 'timed_out', 'abandoned')),
        missing_chunks      BIGINT NOT NULL DEFAULT 0,
        wake_word           TEXT COLLATE "C" NOT NULL,
        firmware_version    TEXT COLLATE "C" NOT NULL,
        review_allowed      BIGINT NOT NULL CHECK (review_allowed IN (0, 1)),
        consent_version     BIGINT NOT NULL CHECK (consent_version >= 0),
        review_blocked      TEXT COLLATE "C",
        audio_path          TEXT COLLATE "C"
    );
CREATE INDEX IF NOT EXISTS clips_household ON clips (household_id, capture_started_at);
CREATE INDEX IF NOT EXISTS clips_received ON clips (received_at);
CREATE TABLE IF NOT EXISTS forgotten (
        utterance_id  TEXT COLLATE "C" NOT NULL,
        device_id     TEXT COLLATE "C" NOT NULL,
        forgotten_at  TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (utterance_id, device_id)
    );
CREATE INDEX IF NOT EXISTS forgotten_at ON forgotten (forgotten_at);
CREATE TABLE IF NOT EXISTS forgotten_before (
        household_id   TEXT COLLATE "C" PRIMARY KEY,
        received_before TEXT COLLATE "C" NOT NULL
    );
CREATE INDEX IF NOT EXISTS clips_device ON clips (device_id, received_at);
CREATE INDEX IF NOT EXISTS clips_household_received ON clips (household_id, received_at);
ALTER TABLE clips ADD COLUMN IF NOT EXISTS clip_seq BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE;

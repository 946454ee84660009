-- The clip store's schema, PostgreSQL version 2 (SQLite's version 5, pipeline/store.py).
-- utterances: every start any worker admitted, first come, so the rules that span messages
-- (one tag per utterance, one receipt time, spoken deletions) are decided by the database.
CREATE TABLE IF NOT EXISTS utterances (
        utterance_id        TEXT COLLATE "C" PRIMARY KEY,
        device_id           TEXT COLLATE "C" NOT NULL,
        household_id        TEXT COLLATE "C" NOT NULL,
        review_allowed      BIGINT NOT NULL CHECK (review_allowed IN (0, 1)),
        consent_version     BIGINT NOT NULL CHECK (consent_version >= 0),
        capture_started_at  TEXT COLLATE "C" NOT NULL,
        received_at         TEXT COLLATE "C" NOT NULL,
        conflicting         BIGINT NOT NULL DEFAULT 0 CHECK (conflicting IN (0, 1)),
        settled             BIGINT NOT NULL DEFAULT 0 CHECK (settled IN (0, 1))
    );
CREATE INDEX IF NOT EXISTS utterances_device ON utterances (device_id, received_at);
CREATE INDEX IF NOT EXISTS utterances_received ON utterances (received_at);
ALTER TABLE forgotten_before ADD COLUMN IF NOT EXISTS captured_since TEXT COLLATE "C";

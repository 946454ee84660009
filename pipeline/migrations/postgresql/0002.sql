-- The clip store's schema, PostgreSQL version 2 (SQLite's version 5, pipeline/store.py).
-- utterances: every start any worker admitted, first come, so the rules that span messages
-- (one tag per utterance, one receipt time, spoken deletions) are decided by the database.
-- Never edit a version once written: add the next.
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
-- The audio moved into the database, beside its row; audio_path stays only for the move
-- from file-backed stores (pipeline/file_audio.py).
ALTER TABLE clips ADD COLUMN IF NOT EXISTS audio_bytes BIGINT CHECK (audio_bytes >= 0);
CREATE TABLE IF NOT EXISTS clip_audio (
        utterance_id  TEXT COLLATE "C" PRIMARY KEY,
        pcm           BYTEA NOT NULL
    );
-- PCM does not compress: stored out of line as it is, without pglz's effort.
ALTER TABLE clip_audio ALTER COLUMN pcm SET STORAGE EXTERNAL;
-- One answer per household request, whichever workers its speakers reach (pipeline/arbitration.py).
CREATE TABLE IF NOT EXISTS contest_entries (
        utterance_id  TEXT COLLATE "C" PRIMARY KEY,
        contest_id    TEXT COLLATE "C" NOT NULL,
        household_id  TEXT COLLATE "C" NOT NULL,
        device_id     TEXT COLLATE "C" NOT NULL,
        entered_at    TEXT COLLATE "C" NOT NULL,
        finished_at   TEXT COLLATE "C",
        spoke         BIGINT NOT NULL DEFAULT 0 CHECK (spoke IN (0, 1)),
        recognized    BIGINT NOT NULL DEFAULT 0 CHECK (recognized IN (0, 1)),
        level_db      DOUBLE PRECISION NOT NULL DEFAULT -200.0,
        outcome       TEXT COLLATE "C" CHECK (outcome IN ('answers', 'cancelled'))
    );
CREATE INDEX IF NOT EXISTS contest_household ON contest_entries (household_id, entered_at);
CREATE INDEX IF NOT EXISTS contest_members ON contest_entries (contest_id);
CREATE INDEX IF NOT EXISTS contest_device ON contest_entries (device_id, entered_at);

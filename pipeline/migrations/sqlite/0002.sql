-- The clip store's schema, SQLite version 2 (PostgreSQL's 0002.sql). Applied once per
-- database, in order, by pipeline.schema_versions.migrate; never edit a version once
-- written: add the next.
-- utterances: every start any worker admitted, first come: the tag and receipt time an
-- utterance keeps for good, whichever worker stores it and however often it is sent again.
CREATE TABLE IF NOT EXISTS utterances (
        utterance_id        TEXT PRIMARY KEY,
        device_id           TEXT NOT NULL,
        household_id        TEXT NOT NULL,
        review_allowed      INTEGER NOT NULL CHECK (review_allowed IN (0, 1)),
        consent_version     INTEGER NOT NULL CHECK (consent_version >= 0),
        capture_started_at  TEXT NOT NULL,
        received_at         TEXT NOT NULL,
        conflicting         INTEGER NOT NULL DEFAULT 0 CHECK (conflicting IN (0, 1)),
        settled             INTEGER NOT NULL DEFAULT 0 CHECK (settled IN (0, 1))
    );
CREATE INDEX IF NOT EXISTS utterances_device ON utterances (device_id, received_at);
CREATE INDEX IF NOT EXISTS utterances_received ON utterances (received_at);
-- "Delete today" also covers requests the cloud had not seen yet, by the device's capture
-- time, but only within the day it names (a clock days behind is no cover).
ALTER TABLE forgotten_before ADD COLUMN captured_since TEXT;
-- The audio moved into the database: audio_bytes says how much a clip kept (NULL: none);
-- audio_path stays only for the move from file-backed stores (pipeline/file_audio.py).
ALTER TABLE clips ADD COLUMN audio_bytes INTEGER CHECK (audio_bytes >= 0);
-- A clip's audio as raw PCM, kept apart so that reading rows (the sampler, the app's
-- lists) never reads audio.
CREATE TABLE IF NOT EXISTS clip_audio (
        utterance_id  TEXT PRIMARY KEY,
        pcm           BLOB NOT NULL
    );
-- One answer per household request, whichever workers its speakers reach
-- (pipeline/arbitration.py): each live request is an entry of its household's contest.
CREATE TABLE IF NOT EXISTS contest_entries (
        utterance_id  TEXT PRIMARY KEY,
        contest_id    TEXT NOT NULL,
        household_id  TEXT NOT NULL,
        device_id     TEXT NOT NULL,
        entered_at    TEXT NOT NULL,
        finished_at   TEXT,
        spoke         INTEGER NOT NULL DEFAULT 0 CHECK (spoke IN (0, 1)),
        recognized    INTEGER NOT NULL DEFAULT 0 CHECK (recognized IN (0, 1)),
        level_db      REAL NOT NULL DEFAULT -200.0,
        outcome       TEXT CHECK (outcome IN ('answers', 'cancelled'))
    );
CREATE INDEX IF NOT EXISTS contest_household ON contest_entries (household_id, entered_at);
CREATE INDEX IF NOT EXISTS contest_members ON contest_entries (contest_id);
CREATE INDEX IF NOT EXISTS contest_device ON contest_entries (device_id, entered_at);
-- Releases before earmark_schema read only this: 5 is their last layout, this one, so a
-- process of such a release sharing the database leaves it as it is.
PRAGMA user_version = 5;

-- The registry's schema, PostgreSQL version 4 (SQLite's 0004.sql). Applied once per
-- database, in order, by pipeline.schema_versions.migrate; never edit a version once
-- written: add the next.
-- Which recordings a person heard: the first time a reviewer's browser was sent a clip's
-- audio, under the pseudonym the household sees (never the reviewer's name), and whether
-- the transcript was corrected. Kept as long as the clip is, deleted with it.
CREATE TABLE IF NOT EXISTS review_heard (
    utterance_id        TEXT COLLATE "C" PRIMARY KEY,
    household_id        TEXT COLLATE "C" NOT NULL,
    reviewer_pseudonym  TEXT COLLATE "C" NOT NULL,
    first_heard_at      TEXT COLLATE "C" NOT NULL,
    corrected           INTEGER NOT NULL DEFAULT 0 CHECK (corrected IN (0, 1))
);
CREATE INDEX IF NOT EXISTS review_heard_by_household ON review_heard (household_id, first_heard_at);

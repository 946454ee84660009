-- The registry's schema, SQLite version 3 (PostgreSQL's 0003.sql). Applied once per
-- database, in order, by pipeline.schema_versions.migrate; never edit a version once
-- written: add the next.
-- A member's address is 'verified' only when someone vouched for it (an operator's
-- add-member); who joined from an invitation link never proved it, so an address is
-- unique per household, not overall (review_opt_out.members).
-- SQLite cannot drop a column's UNIQUE: the table is rebuilt by SQLite's own recipe
-- (https://www.sqlite.org/lang_altertable.html#otheralter): create the new table, copy,
-- drop the old, rename the new. Nothing references members, so foreign keys may stay on.
CREATE TABLE members_new (
    member_id      TEXT PRIMARY KEY,
    household_id   TEXT NOT NULL REFERENCES households (household_id),
    email          TEXT NOT NULL,
    display_name   TEXT NOT NULL,
    password_hash  TEXT NOT NULL,
    role           TEXT NOT NULL DEFAULT 'owner' CHECK (role IN ('owner', 'member')),
    email_status   TEXT NOT NULL DEFAULT 'verified' CHECK (email_status IN ('verified', 'unverified')),
    UNIQUE (household_id, email)
);
INSERT INTO members_new (member_id, household_id, email, display_name, password_hash, role, email_status)
    SELECT member_id, household_id, email, display_name, password_hash, role,
        CASE WHEN member_id IN (SELECT actor FROM audit_log WHERE action = 'member.join')
        THEN 'unverified' ELSE 'verified' END
    FROM members;
DROP TABLE members;
ALTER TABLE members_new RENAME TO members;
-- Sign-in looks an address up in every household.
CREATE INDEX members_by_email ON members (email);
-- Reviewer accounts are activated by their person through a one-time link (only its
-- SHA-256 stored); the admin who made the account is recorded.
ALTER TABLE reviewers ADD COLUMN created_by TEXT;
ALTER TABLE reviewers ADD COLUMN activation_hash TEXT;
ALTER TABLE reviewers ADD COLUMN activation_expires_at TEXT;

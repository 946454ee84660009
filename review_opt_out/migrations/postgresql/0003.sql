-- The registry's schema, PostgreSQL version 3. Applied once per database, in order, by
-- pipeline.database.migrate_postgresql; never edit a version once written: add the next.
-- A member's address is 'verified' only when someone vouched for it (an operator's
-- add-member); who joined from an invitation link never proved it, so an address is
-- unique per household, not overall (review_opt_out.members).
ALTER TABLE members ADD COLUMN email_status TEXT COLLATE "C" NOT NULL DEFAULT 'verified'
    CHECK (email_status IN ('verified', 'unverified'));
UPDATE members SET email_status = 'unverified'
    WHERE member_id IN (SELECT actor FROM audit_log WHERE action = 'member.join');
ALTER TABLE members DROP CONSTRAINT members_email_key;
ALTER TABLE members ADD CONSTRAINT members_household_id_email_key UNIQUE (household_id, email);
-- Sign-in looks an address up in every household.
CREATE INDEX members_by_email ON members (email);
-- Reviewer accounts are activated by their person through a one-time link (only its
-- SHA-256 stored); the admin who made the account is recorded.
ALTER TABLE reviewers ADD COLUMN created_by TEXT COLLATE "C";
ALTER TABLE reviewers ADD COLUMN activation_hash TEXT COLLATE "C";
ALTER TABLE reviewers ADD COLUMN activation_expires_at TEXT COLLATE "C";

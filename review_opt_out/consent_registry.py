"""Households and their consent: every change versioned, signed for devices, and audited."""

from __future__ import annotations

import logging

from contract.messages import ConsentState
from pipeline.database import Database
from pipeline.store import utc_text
from review_opt_out import audit
from review_opt_out.errors import NotFound, ReviewError
from review_opt_out.registry_core import (
    Channel,
    ConsentChange,
    Household,
    RegistryCore,
    zone,
)

_LOGGER = logging.getLogger(__name__)


class ConsentRegistry(RegistryCore):
    """Households, their consent and its history, and what is published to devices."""

    def create_household(self, household_id: str, name: str, actor: str = "admin", time_zone: str = "UTC") -> Household:
        """A new household: consent version 1, review off unless configured otherwise."""
        allowed = self._default_review_allowed
        zone(time_zone)
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM households WHERE household_id = ?", (household_id,)).fetchone():
                raise ReviewError(f"household {household_id} already exists")
            now = utc_text(self._now())
            db.execute(
                "INSERT INTO households VALUES (?, ?, ?, 1, NULL, 1, ?, ?)",
                (household_id, name, int(allowed), now, time_zone),
            )
            db.execute(
                "INSERT INTO consent_history VALUES (?, 1, ?, ?, 'signup', ?)", (household_id, int(allowed), actor, now)
            )
            self._queue_consent(db, household_id, allowed, 1)
            audit.append(db, actor, "household.create", household_id, review_allowed=allowed)
        return self.household(household_id)

    def set_consent(self, household_id: str, allowed: bool, actor: str, channel: Channel) -> Household:
        """Change consent: history, pool purge, assignment revocation, audit, outbox — one transaction."""
        with self.transaction() as db:
            row = db.execute(
                "SELECT review_allowed, consent_version FROM households WHERE household_id = ?", (household_id,)
            ).fetchone()
            if row is None:
                raise NotFound("no such household")
            version = row[1] + 1
            db.execute(
                "UPDATE households SET review_allowed = ?, consent_version = ? WHERE household_id = ?",
                (int(allowed), version, household_id),
            )
            # The cloud's clock: a clip tagged with this version counts only if it arrived after now.
            db.execute(
                "INSERT INTO consent_history VALUES (?, ?, ?, ?, ?, ?)",
                (household_id, version, int(allowed), actor, channel.value, utc_text(self._now())),
            )
            purged = revoked = 0
            if not allowed:
                revoked = db.execute(
                    "UPDATE assignments SET status = 'revoked' WHERE household_id = ? AND status = 'open'",
                    (household_id,),
                ).rowcount
                # What reviewers wrote about this household's speech goes with the consent.
                db.execute(
                    "UPDATE assignments SET corrected = NULL WHERE household_id = ? AND corrected IS NOT NULL",
                    (household_id,),
                )
                purged = db.execute("DELETE FROM review_pool WHERE household_id = ?", (household_id,)).rowcount
            self._queue_consent(db, household_id, allowed, version)
            audit.append(
                db,
                actor,
                "consent.set",
                household_id,
                review_allowed=allowed,
                version=version,
                channel=channel.value,
                purged_from_pool=purged,
                revoked_assignments=revoked,
            )
        _LOGGER.info("household consent v%d review_allowed=%s (%d purged)", version, allowed, purged)
        return self.household(household_id)

    def _queue_consent(self, db: Database, household_id: str, allowed: bool, version: int) -> None:
        state = ConsentState(
            household_id=household_id, review_allowed=allowed, consent_version=version, changed_at=self._now()
        )
        db.execute(
            "INSERT INTO consent_outbox VALUES (?, ?, ?, 0) ON CONFLICT (household_id) DO UPDATE SET "
            "version = excluded.version, payload = excluded.payload, published = 0",
            (household_id, version, self.signer.sign(state)),
        )

    def history(self, household_id: str) -> list[ConsentChange]:
        """The household's consent changes, newest first."""
        with self.reading() as db:
            # Members are recorded by id (names change); people read names.
            rows = db.execute(
                "SELECT c.version, c.review_allowed, COALESCE(m.display_name, c.changed_by), c.channel, c.changed_at "
                "FROM consent_history c LEFT JOIN members m ON m.member_id = c.changed_by "
                "WHERE c.household_id = ? ORDER BY c.version DESC",
                (household_id,),
            ).fetchall()
        return [ConsentChange(r[0], bool(r[1]), r[2], r[3], r[4]) for r in rows]

    def unpublished_consent(self) -> list[tuple[str, int, bytes]]:
        """Consent messages the broker has not acknowledged yet."""
        with self.reading() as db:
            return list(db.execute("SELECT household_id, version, payload FROM consent_outbox WHERE published = 0"))

    def consent_page(self, after_household: str, limit: int = 500) -> list[tuple[str, int, bytes]]:
        """Every household's current signed consent, in pages (republished whenever the broker may have lost it)."""
        with self.reading() as db:
            return list(
                db.execute(
                    "SELECT household_id, version, payload FROM consent_outbox WHERE household_id > ? "
                    "ORDER BY household_id LIMIT ?",
                    (after_household, limit),
                )
            )

    def mark_published(self, household_id: str, version: int) -> None:
        """The broker has this version; a newer one queued meanwhile stays pending."""
        # A write, so under the writer lock like every other: an autocommit write took
        # SQLite's lock outside the queue, and a clip save behind it could time out.
        with self.transaction() as db:
            db.execute(
                "UPDATE consent_outbox SET published = 1 WHERE household_id = ? AND version = ?",
                (household_id, version),
            )

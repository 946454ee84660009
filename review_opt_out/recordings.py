"""A household's recordings: listing, audio, deletion (by the app, by voice) and retention."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pipeline import clip_queries
from pipeline.clip_queries import Judgement, Selection
from pipeline.database import SQLITE, Database, placeholders
from pipeline.store import utc_text, wav_bytes
from review_opt_out import audit, heard
from review_opt_out.eligibility import HOUSEHOLD, IS_ELIGIBLE
from review_opt_out.errors import CountChanged, NotFound, ReviewError
from review_opt_out.registry_core import (
    _TOMBSTONE_LIFETIME,
    JUST_SAID,
    RETENTION_CHOICES,
    RecordingFilter,
    RegistryCore,
    zone,
)


class Recordings(RegistryCore):
    """What a household can see and delete of its recordings, and retention."""

    def set_retention(self, household_id: str, choice: str, actor: str) -> None:
        """Auto-delete after 3 months, 18 months, or never."""
        if choice not in RETENTION_CHOICES:
            raise ReviewError(f"retention must be one of {sorted(RETENTION_CHOICES)}")
        with self.transaction() as db:
            db.execute(
                "UPDATE households SET retention_days = ? WHERE household_id = ?",
                (RETENTION_CHOICES[choice], household_id),
            )
            audit.append(db, actor, "retention.set", household_id, choice=choice)
            if RETENTION_CHOICES[choice] is not None:
                db.execute("INSERT INTO retention_pending VALUES (?) ON CONFLICT DO NOTHING", (household_id,))
        # Clips older than the new cutoff are behind the retention run's marks: expire them now.
        self._expire_household(household_id, "retention")

    def set_keep_recordings(self, household_id: str, keep: bool, actor: str) -> None:
        """The "don't keep recordings" mode: no new audio is written; clips kept before go at the next retention run."""
        with self.transaction() as db:
            db.execute("UPDATE households SET keep_recordings = ? WHERE household_id = ?", (int(keep), household_id))
            # The clip store reads this at every start, so the next request is already not kept.
            clip_queries.set_keep_audio(db, household_id, keep)
            audit.append(db, actor, "keep_recordings.set", household_id, keep=keep)

    def recordings(
        self,
        household_id: str,
        which: RecordingFilter | None = None,
        *,
        after: tuple[str, str] | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """The household's clips, newest first, `limit` of them after the (captured_at, id)
        cursor `after` (transcripts included: it is their own data).

        `may_be_reviewed` is the one eligibility rule's answer for the clip now: only then
        can it be drawn into the review sample.
        """
        with self.reading() as db:
            rows = clip_queries.listing(
                db, _selection(household_id, which or RecordingFilter()), IS_ELIGIBLE, after=after, limit=limit
            )
            by_person = heard.of_clips(db, [r.utterance_id for r in rows])
        return [
            {
                "id": r.utterance_id,
                "device_id": r.device_id,
                "captured_at": r.capture_started_at,
                "duration_seconds": r.duration_seconds,
                "transcript": r.transcript,
                "review_allowed_at_capture": r.review_allowed,
                "has_audio": r.has_audio,
                "end_reason": r.end_reason,  # "wake_rejected": the speaker woke by mistake
                "may_be_reviewed": bool(r.judged),
                "heard": by_person.get(r.utterance_id),  # by a person, never a speaker
            }
            for r in rows
        ]

    def heard_summary(self, household_id: str) -> dict[str, Any]:
        """What the household's summary line says: how many of its recordings a person heard."""
        with self.reading() as db:
            return heard.summary(db, household_id)

    def count_recordings(self, household_id: str, which: RecordingFilter) -> int:
        """How many of the household's clips `which` matches: what a delete of it would remove."""
        with self.reading() as db:
            return clip_queries.count(db, _selection(household_id, which))

    def household_devices(self, household_id: str) -> list[str]:
        """The speakers enrolled in a household, by id."""
        with self.reading() as db:
            return clip_queries.household_devices(db, household_id)

    def recording_audio(self, household_id: str, clip_id: str) -> bytes:
        """A household's own clip audio as WAV (NotFound for anyone else's)."""
        with self.reading() as db:
            pcm = clip_queries.pcm(db, clip_id, household_id=household_id)
        if pcm is None:
            raise NotFound("no such recording")
        return wav_bytes(pcm)

    def delete(self, household_id: str, actor: str, *, clip_id: str | None = None,
               since: datetime | None = None, until: datetime | None = None, device_id: str | None = None,
               expected_count: int | None = None) -> int:  # fmt: skip
        """Delete one clip, or the household's clips a filter matches (none: all of them):
        rows, pool, assignments, audio.

        Returns how many clips went. With `expected_count` (what the member confirmed),
        nothing is deleted if the filter now matches another number (CountChanged). The
        audio files are recorded in the same transaction and unlinked after it commits; a
        crash in between is finished at the next open.
        """
        which = Selection(household_id, device_id, since, until, clip_id)
        with self.transaction() as db:
            ids = clip_queries.ids(db, which)
            if expected_count is not None and len(ids) != expected_count:
                raise CountChanged(len(ids))
            _delete_rows(db, ids)
            audit.append(db, actor, "recordings.delete", household_id, count=len(ids), clip_id=clip_id)
        return len(ids)

    def device_household(self, device_id: str) -> str | None:
        """The household a device is enrolled in, as the cloud knows it."""
        with self.reading() as db:
            return clip_queries.device_household(db, device_id)

    def delete_spoken(self, device_id: str, command_id: str, *, today: bool) -> int:
        """A spoken "delete what I just said" (today=False) or "delete everything I said
        today" heard by `device_id`, whose own utterance is `command_id`.

        The command goes too, stored yet or not (a tombstone keeps a later save from writing
        it); the same command delivered twice deletes nothing more. "Just said" is this
        device's last request (one with speech, received in the JUST_SAID_SECONDS before the
        command, by the cloud's clock); "today" is the household's day in its own time zone,
        matched as in `delete`, and also covers requests still on their way. Returns how
        many requests went, the command always among them.
        """
        actor = f"voice:{device_id}"
        with self.transaction() as db:
            now = self._now()  # after the writer lock: every receipt stamped before it is earlier
            household_id = clip_queries.device_household(db, device_id)
            if household_id is None:
                raise NotFound("no such device")
            tz_row = db.execute("SELECT time_zone FROM households WHERE household_id = ?", (household_id,)).fetchone()
            if tz_row is None:
                raise NotFound("no such household")
            # A tombstone outlives any stream and outbox; then it goes (a device adds a few a minute).
            clip_queries.drop_tombstones_before(db, now - _TOMBSTONE_LIFETIME)
            if not clip_queries.forget(db, device_id, [command_id], now):
                return 0  # a redelivered command: done already
            command = clip_queries.ids(db, Selection(household_id, device_id, clip_id=command_id))
            in_flight: list[str] = []
            if today:
                midnight = now.astimezone(zone(str(tz_row[0]))).replace(hour=0, minute=0, second=0, microsecond=0)
                ids = clip_queries.ids(db, Selection(household_id, since=midnight))
                # Requests still on their way are decided when stored (pipeline.store): by the
                # first receipt any worker recorded, or a capture earlier today.
                clip_queries.forget_household_before(db, household_id, received_before=now, captured_since=midnight)
            else:
                last = clip_queries.last_request(db, device_id, household_id, command_id, now=now, window=JUST_SAID)
                ids = [last.utterance_id] if last is not None and last.stored else []
                in_flight = [last.utterance_id] if last is not None and not last.stored else []
                clip_queries.forget(db, device_id, in_flight, now)
            ids = list(dict.fromkeys([*ids, *command]))
            _delete_rows(db, ids)
            audit.append(
                db, actor, "recordings.delete", household_id, count=len(ids) + len(in_flight), channel="voice",
                scope="today" if today else "last_request",
            )  # fmt: skip
        return len(ids) + len(in_flight) + (not command)

    def apply_retention(self, actor: str = "retention") -> int:
        """Delete what households' auto-delete and "don't keep" settings say must go; how many went.

        Reads only what can be due: the clips of "don't keep" households, and per retention
        choice the clips received between the last run's cutoff and this one's (by the
        receipt-time index). A household that shortens its retention has its older clips
        expired at that moment (`set_retention`), so the marks never skip one.
        """
        now = self._now()
        with self.reading() as db:
            pending = [str(row[0]) for row in db.execute("SELECT household_id FROM retention_pending")]
        deleted = sum(self._expire_household(household_id, actor) for household_id in pending)
        with self.reading() as db:
            due = clip_queries.matching(db, Judgement(HOUSEHOLD, "h.keep_recordings = 0"))
            marks = dict(db.execute("SELECT retention_days, expired_before FROM retention_marks").fetchall())
            choices = [
                r[0]
                for r in db.execute("SELECT DISTINCT retention_days FROM households WHERE retention_days IS NOT NULL")
            ]
            cutoffs = {days: utc_text(now - timedelta(days=days)) for days in choices}
            for days, cutoff in cutoffs.items():
                kept_for = Judgement(HOUSEHOLD, "h.retention_days = ? AND h.keep_recordings = 1", (days,))
                due += clip_queries.matching(db, kept_for, received_from=marks.get(days, ""), received_before=cutoff)
        deleted += sum(self.delete(household_id, actor, clip_id=clip_id) for household_id, clip_id in due)
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO retention_marks VALUES (?, ?) ON CONFLICT (retention_days) DO UPDATE SET "
                "expired_before = excluded.expired_before",
                list(cutoffs.items()),
            )
        return deleted

    def _expire_household(self, household_id: str, actor: str) -> int:
        """Delete a household's clips past its retention now (by the household + receipt-time
        index), then clear its pending mark."""
        household = self.household(household_id)
        deleted = 0
        days = household.retention_days
        if days is not None:
            cutoff = self._now() - timedelta(days=days)
            with self.reading() as db:
                expired = clip_queries.received_before(db, household_id, cutoff)
            deleted = sum(self.delete(household_id, actor, clip_id=clip_id) for clip_id in expired)
        with self.transaction() as db:
            # Only if the retention is still the one just applied: a shorter one set meanwhile
            # (by another process, whose own expiry may have died) stays pending.
            db.execute(
                "DELETE FROM retention_pending WHERE household_id = ? AND household_id IN "
                "(SELECT household_id FROM households WHERE COALESCE(retention_days, -1) = ?)",
                (household_id, -1 if days is None else days),
            )
        return deleted


def _selection(household_id: str, which: RecordingFilter) -> Selection:
    """The household's recordings `which` matches, as the clip store selects them."""
    return Selection(household_id, which.device_id, which.since, which.until, also=heard.HEARD if which.heard else None)


def _delete_rows(db: Database, ids: list[str]) -> None:
    """Delete these clips, their audio and everything review holds of them, in the caller's
    transaction: row and audio go in the same commit."""
    for chunk_start in range(0, len(ids), 500):
        batch = ids[chunk_start : chunk_start + 500]
        marks = placeholders(batch)
        db.execute(f"DELETE FROM assignments WHERE clip_id IN ({marks})", batch)  # noqa: S608
        db.execute(f"DELETE FROM review_pool WHERE clip_id IN ({marks})", batch)  # noqa: S608
        db.execute(f"DELETE FROM review_considered WHERE clip_id IN ({marks})", batch)  # noqa: S608
        heard.forget(db, batch)
    clip_queries.delete(db, ids)
    if db.dialect == SQLITE:
        # SQLite gives a new row max(rowid) + 1: once the newest clips are gone, ids at or
        # below the sampler's mark would be handed out again and never considered (the app
        # would call them "may be reviewed" for ever). The mark comes down with the clips,
        # so every id handed out later is above it. PostgreSQL's clip_seq never repeats.
        db.execute("UPDATE sampler_mark SET last_rowid = min(last_rowid, ?)", (clip_queries.newest_order(db),))

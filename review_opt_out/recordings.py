"""A household's recordings: listing, audio, deletion (by the app, by voice) and retention."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pipeline.database import SQLITE, Database
from pipeline.store import utc_text, wav_bytes
from review_opt_out import audit
from review_opt_out.eligibility import ELIGIBLE, JOINS
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
            db.execute(
                "INSERT INTO storage_policy VALUES (?, ?) ON CONFLICT (household_id) DO UPDATE SET "
                "keep_audio = excluded.keep_audio",
                (household_id, int(keep)),
            )
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
        condition, params = _recording_filter(household_id, which or RecordingFilter())
        if after is not None:
            condition += " AND (c.capture_started_at, c.utterance_id) < (?, ?)"
            params += list(after)
        with self.reading() as db:
            # Fixed SQL; every value is bound.
            query = (
                "SELECT c.utterance_id, c.device_id, c.capture_started_at, c.duration_seconds, c.transcript, "  # noqa: S608
                f"c.review_allowed, c.audio_bytes IS NOT NULL, {ELIGIBLE} FROM {JOINS} WHERE {condition} "
                "ORDER BY c.capture_started_at DESC, c.utterance_id DESC"
            )
            if limit is not None:  # neither engine takes one spelling of "no limit"
                query += " LIMIT ?"
                params.append(limit)
            rows = db.execute(query, params).fetchall()
        return [
            {
                "id": r[0],
                "device_id": r[1],
                "captured_at": r[2],
                "duration_seconds": r[3],
                "transcript": r[4],
                "review_allowed_at_capture": bool(r[5]),
                "has_audio": bool(r[6]),
                "may_be_reviewed": bool(r[7]),
            }
            for r in rows
        ]

    def count_recordings(self, household_id: str, which: RecordingFilter) -> int:
        """How many of the household's clips `which` matches: what a delete of it would remove."""
        condition, params = _recording_filter(household_id, which)
        with self.reading() as db:
            return int(db.execute(f"SELECT count(*) FROM clips c WHERE {condition}", params).fetchone()[0])  # noqa: S608

    def household_devices(self, household_id: str) -> list[str]:
        """The speakers enrolled in a household, by id."""
        with self.reading() as db:
            rows = db.execute(
                "SELECT device_id FROM devices WHERE household_id = ? ORDER BY device_id", (household_id,)
            )
            return [str(r[0]) for r in rows]

    def recording_audio(self, household_id: str, clip_id: str) -> bytes:
        """A household's own clip audio as WAV (NotFound for anyone else's)."""
        with self.reading() as db:
            row = db.execute(
                "SELECT a.pcm FROM clips c JOIN clip_audio a ON a.utterance_id = c.utterance_id "
                "WHERE c.utterance_id = ? AND c.household_id = ?",
                (clip_id, household_id),
            ).fetchone()
        if row is None:
            raise NotFound("no such recording")
        return wav_bytes(bytes(row[0]))

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
        condition, params = _recording_filter(household_id, RecordingFilter(device_id, since, until))
        if clip_id is not None:
            condition += " AND c.utterance_id = ?"
            params.append(clip_id)
        with self.transaction() as db:
            rows = db.execute(f"SELECT utterance_id FROM clips c WHERE {condition}", params).fetchall()  # noqa: S608
            if expected_count is not None and len(rows) != expected_count:
                raise CountChanged(len(rows))
            _delete_rows(db, [row[0] for row in rows])
            audit.append(db, actor, "recordings.delete", household_id, count=len(rows), clip_id=clip_id)
        return len(rows)

    def device_household(self, device_id: str) -> str | None:
        """The household a device is enrolled in, as the cloud knows it."""
        with self.reading() as db:
            row = db.execute("SELECT household_id FROM devices WHERE device_id = ?", (device_id,)).fetchone()
        return None if row is None else str(row[0])

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
            found = db.execute("SELECT household_id FROM devices WHERE device_id = ?", (device_id,)).fetchone()
            if found is None:
                raise NotFound("no such device")
            household_id = str(found[0])
            tz_row = db.execute("SELECT time_zone FROM households WHERE household_id = ?", (household_id,)).fetchone()
            if tz_row is None:
                raise NotFound("no such household")
            # A tombstone outlives any stream and outbox; then it goes (a device adds a few a minute).
            db.execute("DELETE FROM forgotten WHERE forgotten_at < ?", (utc_text(now - _TOMBSTONE_LIFETIME),))
            fresh = db.execute(
                "INSERT INTO forgotten VALUES (?, ?, ?) ON CONFLICT DO NOTHING", (command_id, device_id, utc_text(now))
            ).rowcount
            if not fresh:
                return 0  # a redelivered command: done already
            command = db.execute(
                "SELECT utterance_id FROM clips WHERE utterance_id = ? AND device_id = ? AND household_id = ?",
                (command_id, device_id, household_id),
            ).fetchone()
            in_flight: list[str] = []
            if today:
                midnight = now.astimezone(zone(str(tz_row[0]))).replace(hour=0, minute=0, second=0, microsecond=0)
                since = utc_text(midnight)
                ids = [
                    str(row[0])
                    for row in db.execute(
                        "SELECT utterance_id FROM clips WHERE household_id = ? "
                        "AND (capture_started_at >= ? OR received_at >= ?)",
                        (household_id, since, since),
                    )
                ]
                # Requests still on their way are decided when stored (pipeline.store): by the
                # first receipt any worker recorded, or a capture earlier today.
                db.execute(
                    "INSERT INTO forgotten_before VALUES (?, ?, ?) ON CONFLICT (household_id) DO UPDATE SET "
                    "received_before = excluded.received_before, captured_since = excluded.captured_since "
                    "WHERE excluded.received_before > forgotten_before.received_before",
                    (household_id, utc_text(now), since),
                )
            else:
                ids, in_flight = _just_said(db, device_id, household_id, command_id, now)
                db.executemany(
                    "INSERT INTO forgotten VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                    [(utterance_id, device_id, utc_text(now)) for utterance_id in in_flight],
                )
            ids = list(dict.fromkeys([*ids, *([str(command[0])] if command else [])]))
            _delete_rows(db, ids)
            audit.append(
                db, actor, "recordings.delete", household_id, count=len(ids) + len(in_flight), channel="voice",
                scope="today" if today else "last_request",
            )  # fmt: skip
        return len(ids) + len(in_flight) + (command is None)

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
            due = db.execute(
                "SELECT h.household_id, c.utterance_id FROM households h "
                "JOIN clips c ON c.household_id = h.household_id WHERE h.keep_recordings = 0"
            ).fetchall()
            marks = dict(db.execute("SELECT retention_days, expired_before FROM retention_marks").fetchall())
            choices = [
                r[0]
                for r in db.execute("SELECT DISTINCT retention_days FROM households WHERE retention_days IS NOT NULL")
            ]
            cutoffs = {days: utc_text(now - timedelta(days=days)) for days in choices}
            for days, cutoff in cutoffs.items():
                due += db.execute(
                    "SELECT c.household_id, c.utterance_id FROM clips c JOIN households h "
                    "ON h.household_id = c.household_id WHERE c.received_at >= ? AND c.received_at < ? "
                    "AND h.retention_days = ? AND h.keep_recordings = 1",
                    (marks.get(days, ""), cutoff, days),
                ).fetchall()
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
            cutoff = utc_text(self._now() - timedelta(days=days))
            with self.reading() as db:
                rows = db.execute(
                    "SELECT utterance_id FROM clips WHERE household_id = ? AND received_at < ?", (household_id, cutoff)
                ).fetchall()
            deleted = sum(self.delete(household_id, actor, clip_id=row[0]) for row in rows)
        with self.transaction() as db:
            # Only if the retention is still the one just applied: a shorter one set meanwhile
            # (by another process, whose own expiry may have died) stays pending.
            db.execute(
                "DELETE FROM retention_pending WHERE household_id = ? AND household_id IN "
                "(SELECT household_id FROM households WHERE COALESCE(retention_days, -1) = ?)",
                (household_id, -1 if days is None else days),
            )
        return deleted


def _recording_filter(household_id: str, which: RecordingFilter) -> tuple[str, list[Any]]:
    """SQL over `clips c` for a household's recordings that `which` matches.

    A date range matches the device's capture time *or* the cloud's receipt time: a
    device's wrong clock never keeps a recording out of "delete today".
    """
    where, params = ["c.household_id = ?"], [household_id]
    if which.device_id is not None:
        where.append("c.device_id = ?")
        params.append(which.device_id)
    if which.since is not None or which.until is not None:
        ranges = []
        for column in ("c.capture_started_at", "c.received_at"):
            bounds = [f"{column} >= ?"] * (which.since is not None) + [f"{column} < ?"] * (which.until is not None)
            ranges.append("(" + " AND ".join(bounds) + ")")
            params += [utc_text(t) for t in (which.since, which.until) if t is not None]
        where.append("(" + " OR ".join(ranges) + ")")
    return " AND ".join(where), params


def _just_said(
    db: Database, device_id: str, household_id: str, command_id: str, now: datetime
) -> tuple[list[str], list[str]]:
    """The device's last request before the command (one with speech, received within
    JUST_SAID): ([its id] if it is stored, []) or ([], [its id]) if it is still on its way
    to whichever worker will store it.

    Receipt times are the utterance ledger's, the first any worker recorded (a stored clip
    carries it too): a request sent again after the command is still one said before it.
    """
    command = db.execute("SELECT received_at FROM utterances WHERE utterance_id = ?", (command_id,)).fetchone()
    if command is None:
        command = db.execute("SELECT received_at FROM clips WHERE utterance_id = ?", (command_id,)).fetchone()
    before = str(command[0]) if command is not None else utc_text(now)
    window = (device_id, household_id, command_id, before, utc_text(now - JUST_SAID))
    stored = db.execute(
        "SELECT utterance_id, received_at FROM clips WHERE device_id = ? AND household_id = ? "
        "AND utterance_id != ? AND received_at <= ? AND received_at >= ? "
        "AND end_reason NOT IN ('no_speech', 'muted') ORDER BY received_at DESC LIMIT 1",
        window,
    ).fetchone()
    pending = db.execute(
        "SELECT utterance_id, received_at FROM utterances WHERE device_id = ? AND household_id = ? "
        "AND utterance_id != ? AND received_at <= ? AND received_at >= ? AND settled = 0 "
        "ORDER BY received_at DESC LIMIT 1",
        window,
    ).fetchone()
    if pending is not None and (stored is None or str(pending[1]) > str(stored[1])):
        return [], [str(pending[0])]
    return ([str(stored[0])] if stored is not None else []), []


def _delete_rows(db: Database, ids: list[str]) -> None:
    """Delete these clips, their audio and everything review holds of them, in the caller's
    transaction: row and audio go in the same commit."""
    for chunk_start in range(0, len(ids), 500):
        batch = ids[chunk_start : chunk_start + 500]
        marks = ",".join("?" * len(batch))
        db.execute(f"DELETE FROM assignments WHERE clip_id IN ({marks})", batch)  # noqa: S608
        db.execute(f"DELETE FROM review_pool WHERE clip_id IN ({marks})", batch)  # noqa: S608
        db.execute(f"DELETE FROM review_considered WHERE clip_id IN ({marks})", batch)  # noqa: S608
        db.execute(f"DELETE FROM clip_audio WHERE utterance_id IN ({marks})", batch)  # noqa: S608
        db.execute(f"DELETE FROM clips WHERE utterance_id IN ({marks})", batch)  # noqa: S608
    if db.dialect == SQLITE:
        # SQLite gives a new row max(rowid) + 1: once the newest clips are gone, ids at or
        # below the sampler's mark would be handed out again and never considered (the app
        # would call them "may be reviewed" for ever). The mark comes down with the clips,
        # so every id handed out later is above it. PostgreSQL's clip_seq never repeats.
        db.execute("UPDATE sampler_mark SET last_rowid = min(last_rowid, (SELECT coalesce(max(rowid), 0) FROM clips))")

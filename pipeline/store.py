"""The clip store: one row per utterance and its audio (if kept), in the database, in one transaction.

Every row carries the household's review-consent tag as the device sent it
(`review_allowed`, `consent_version`, both NOT NULL), the cloud's own receipt time
(`received_at`, the database's clock: retention and eligibility never trust the
device's) and, when the cloud narrowed review itself (`review_blocked`), why. A clip
without a valid tag is rejected before anything is written. `audio_bytes` is NULL when
no audio was kept (muted, "don't keep my recordings", a wake with no speech).

The audio (raw 16 kHz mono PCM) lives in `clip_audio`, beside its row: workers on
several machines share nothing but the broker and the database, a save is one commit
(row and audio, or neither), and a deletion removes both at once. The row is inserted
*only if the utterance is not stored yet*, so a redelivered utterance never touches
what is stored. Stores of earlier releases (audio as WAV files under `clips/`) are
moved in at the first open (`pipeline.file_audio`).

The rules that span messages are decided here too, in the transaction that stores:
`utterances` records every admitted start (first tag, first receipt), see `admit_start`;
their SQL is in `pipeline.ledger`, and a batch of clips is written by `pipeline.clip_batch`.
Where the database is, and its tables, are in `pipeline.clip_schema`; what the consent
side may ask of them, in `pipeline.clip_queries`; the types it keeps and answers with, in
`pipeline.clip_records`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from uuid import UUID

from contract.errors import ContractError
from contract.topics import check_id
from pipeline.arbitration import ContestRules, Outcome
from pipeline.clip_batch import CLIP_COLUMNS, insert_clips
from pipeline.clip_records import Clip, ClipStore, DeviceAdmission, StartClaim, wav_bytes
from pipeline.clip_schema import open_database
from pipeline.database import WriterLock as WriterLock  # re-exported: tests and benchmarks use it from here
from pipeline.database import utc_text as utc_text  # the store's callers have always imported it from here
from pipeline.errors import ClipRejected, PipelineError
from pipeline.ledger import decide_contest, enter_contest, first_start, forgotten_by_household, mark_conflict

__all__ = ["Clip", "ClipStore", "DeviceAdmission", "SqlClipStore", "StartClaim", "WriterLock", "utc_text", "wav_bytes"]

_LOGGER = logging.getLogger(__name__)

# How long the utterance ledger remembers a start: far past any stream, outbox resend and
# spoken-deletion tombstone (a day).
LEDGER_LIFETIME = timedelta(days=2)


class SqlClipStore:
    """Rows and audio in the cloud's database (SQLite in `data_dir`, or PostgreSQL at `database`)."""

    def __init__(self, data_dir: Path, *, database: str | None = None, crash_hook: object = None) -> None:
        self._data_dir = data_dir
        self._db = open_database(data_dir, database)
        self._crash_hook = crash_hook  # a test seam: called at named points inside save()

    def _crash_point(self, name: str) -> None:
        if callable(self._crash_hook):
            self._crash_hook(name)

    def enroll(self, device_id: str, household_id: str) -> str | None:
        """Register a device as belonging to a household; return its previous household."""
        try:
            check_id("device id", device_id)
            check_id("household id", household_id)
        except ContractError as err:
            raise ClipRejected(str(err)) from err
        previous = self.device_household(device_id)
        with self._db.writing():  # a turn like every writer's, not SQLite's sleeping retries
            self._db.execute(
                "INSERT INTO devices (device_id, household_id) VALUES (?, ?) "
                "ON CONFLICT (device_id) DO UPDATE SET household_id = excluded.household_id",
                (device_id, household_id),
            )
        return previous

    def device_household(self, device_id: str) -> str | None:
        """The household a device is enrolled in, or None."""
        row = self._db.execute("SELECT household_id FROM devices WHERE device_id = ?", (device_id,)).fetchone()
        return None if row is None else str(row[0])

    def admit_start(self, claim: StartClaim, rules: ContestRules | None = None) -> DeviceAdmission:
        """Record a start in the utterance ledger and decide what it is, in one transaction.

        The first start any worker admits fixes the utterance's tag, household and receipt
        time (the database's clock). A later start, on any worker, before or after the clip
        is stored, is compared with it: another tag or household marks the utterance
        conflicting, and its clip (stored, or stored later by whoever does) unreviewable.
        A start for another device's utterance id changes nothing. With `rules`, a live
        request also enters its household's contest (see `pipeline.arbitration`).
        """
        utterance_id = str(claim.utterance_id)
        tag = (claim.household_id, claim.review_allowed, claim.consent_version)
        with self._db.writing() as db:
            enrolled = db.execute(
                "SELECT d.household_id, COALESCE(p.keep_audio, 1) FROM devices d "
                "LEFT JOIN storage_policy p ON p.household_id = d.household_id WHERE d.device_id = ?",
                (claim.device_id,),
            ).fetchone()
            first = first_start(db, utterance_id)
            conflicting = False
            if first is not None:
                if first[0] != claim.device_id:
                    return DeviceAdmission(None, True, False, foreign=True)
                conflicting = (first[1], bool(first[2]), int(first[3])) != tag
                if conflicting:
                    mark_conflict(db, utterance_id)
                received_at, capture = str(first[4]), str(first[5])
            else:
                if enrolled is None or str(enrolled[0]) != claim.household_id:
                    # Refused by the caller (check_enrolment); nothing recorded for a stranger.
                    return DeviceAdmission(None if enrolled is None else str(enrolled[0]), True, False)
                received_at, capture = utc_text(db.now()), utc_text(claim.capture_started_at)
                db.execute(
                    "INSERT INTO utterances (utterance_id, device_id, household_id, review_allowed, consent_version, "
                    "capture_started_at, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (utterance_id, claim.device_id, claim.household_id, int(claim.review_allowed),
                     claim.consent_version, capture, received_at),
                )  # fmt: skip
            stored = db.execute("SELECT 1 FROM clips WHERE utterance_id = ?", (utterance_id,)).fetchone() is not None
            forgotten = forgotten_by_household(
                db, utterance_id, claim.device_id, claim.household_id, received_at, capture
            )
            contest = db.execute(
                "SELECT contest_id, outcome FROM contest_entries WHERE utterance_id = ?", (utterance_id,)
            ).fetchone()
            if contest is None and first is None and rules is not None and not stored and not forgotten:
                contest = enter_contest(db, claim, received_at, rules)
        return DeviceAdmission(
            household_id=None if enrolled is None else str(enrolled[0]),
            keep_audio=True if enrolled is None else bool(enrolled[1]),
            stored=stored,
            forgotten=forgotten,
            received_at=datetime.fromisoformat(received_at),
            conflicting=conflicting,
            contest_id=None if contest is None else str(contest[0]),
            outcome=None if contest is None or contest[1] is None else Outcome(contest[1]),
        )

    def settle_contest(
        self, utterance_id: UUID, rules: ContestRules, *, spoke: bool, recognized: bool, level_db: float
    ) -> Outcome | None:
        """Report how an entrant ended and decide its contest if it can be: its outcome, or
        None while the contest must still wait (then ask again with `contest_outcome`)."""
        with self._db.writing() as db:
            db.execute(
                "UPDATE contest_entries SET finished_at = ?, spoke = ?, recognized = ?, level_db = ? "
                "WHERE utterance_id = ? AND finished_at IS NULL",
                (utc_text(db.now()), int(spoke), int(recognized), max(level_db, -200.0), str(utterance_id)),
            )
            return decide_contest(db, str(utterance_id), rules)

    def contest_entrants(self, utterance_id: UUID) -> int:
        """How many speakers are in this entrant's contest so far (itself included)."""
        row = self._db.execute(
            "SELECT COUNT(*) FROM contest_entries WHERE contest_id = "
            "(SELECT contest_id FROM contest_entries WHERE utterance_id = ?)",
            (str(utterance_id),),
        ).fetchone()
        return int(row[0])

    def contest_outcome(self, utterance_id: UUID, rules: ContestRules | None = None) -> Outcome | None:
        """An entrant's outcome once decided (None: not yet). With `rules`, decide it if it can
        be now (under the writer lock: one decision, whichever worker makes it)."""
        if rules is None:
            row = self._db.execute(
                "SELECT outcome FROM contest_entries WHERE utterance_id = ?", (str(utterance_id),)
            ).fetchone()
            return None if row is None or row[0] is None else Outcome(row[0])
        with self._db.writing() as db:
            return decide_contest(db, str(utterance_id), rules)

    def note_conflict(self, utterance_id: UUID) -> None:
        """A second start with another tag reached this worker: never reviewable, on every worker."""
        with self._db.writing() as db:
            mark_conflict(db, str(utterance_id))

    def prune_ledger(self) -> int:
        """Forget ledger entries older than LEDGER_LIFETIME: by then every outbox has given
        up, and a stored clip keeps its own tag (a start after this is compared with it)."""
        with self._db.writing() as db:
            now = db.now()
            pruned = db.execute("DELETE FROM utterances WHERE received_at < ?", (utc_text(now - LEDGER_LIFETIME),))
            # Contests matter for seconds, and a minute for the per-device contest rate.
            db.execute("DELETE FROM contest_entries WHERE entered_at < ?", (utc_text(now - timedelta(hours=1)),))
            return int(pruned.rowcount)

    def save(self, clip: Clip, audio: bytes | None) -> bool:
        """Store a clip and its audio in one transaction; False (touching nothing stored) if the
        utterance is stored already.

        A clip its household deleted before it arrived here is settled without being written.
        """
        (result,) = self.save_many([(clip, audio)])
        if isinstance(result, Exception):
            raise result
        return result

    def save_many(self, items: Sequence[tuple[Clip, bytes | None]]) -> list[bool | Exception]:
        """Store several clips in one transaction, one commit and one sync for all (group commit).

        The batch is written with a handful of statements (`pipeline.clip_batch`). A clip
        the store refuses gets its error in its place of the answer and leaves the others
        as they are: the transaction is rolled back and the batch run again clip by clip,
        to find it, then without it (a refusal is rare). Only when the commit is durable
        does this return; if it fails, it raises and none is stored.
        """
        results: list[bool | Exception] = [False] * len(items)
        pending = []
        for index, (clip, _audio) in enumerate(items):
            try:
                _validate(clip)
                pending.append(index)
            except ClipRejected as err:
                results[index] = err
        # What one clip's values cause; a failing connection fails the whole batch.
        refusals: tuple[type[Exception], ...] = (PipelineError, *self._db.value_errors)
        outcomes: dict[int, bool | None] = {}
        whole = True  # the batch in one go; after a refusal, one clip at a time to find it
        while pending:
            outcomes = {}
            try:
                with self._db.writing():
                    for part in [pending] if whole else [[index] for index in pending]:
                        try:
                            written = insert_clips(self._db, [items[i] for i in part], self._row_written)
                        except refusals as err:
                            raise _Refused(None if whole else part[0], err) from err
                        outcomes.update(zip(part, written, strict=True))
            except _Refused as refused:
                if refused.index is None:
                    whole = False
                else:
                    results[refused.index] = refused.error
                    pending.remove(refused.index)
                continue
            break
        for index, inserted in outcomes.items():
            if inserted is None:  # deleted by its household before it got here: settled
                _LOGGER.info(
                    "utterance %s was deleted by its household before it was stored", items[index][0].utterance_id
                )
            results[index] = inserted is not False
        if any(outcomes.values()):
            self._crash_point("committed")
        return results

    def _row_written(self) -> None:
        self._crash_point("row_inserted")

    def block_review(self, utterance_id: UUID, reason: str) -> None:
        """Rule a stored clip out of review; a reason already recorded stays."""
        with self._db.writing():  # must not time out behind back-to-back writers: it narrows review
            self._db.execute(
                "UPDATE clips SET review_blocked = COALESCE(review_blocked, ?) WHERE utterance_id = ?",
                (reason, str(utterance_id)),
            )

    def get(self, utterance_id: UUID) -> Clip | None:
        """A stored clip, or None."""
        row = self._db.execute(
            f"SELECT {CLIP_COLUMNS} FROM clips WHERE utterance_id = ?",  # noqa: S608 - constant
            (str(utterance_id),),
        ).fetchone()
        if row is None:
            return None
        return Clip(
            utterance_id=UUID(row[0]),
            device_id=row[1],
            household_id=row[2],
            capture_started_at=datetime.fromisoformat(row[3]),
            received_at=datetime.fromisoformat(row[4]),
            stored_at=datetime.fromisoformat(row[5]),
            duration_seconds=row[6],
            transcript=row[7],
            end_reason=row[8],
            status=row[9],
            missing_chunks=row[10],
            wake_word=row[11],
            firmware_version=row[12],
            review_allowed=bool(row[13]),
            consent_version=row[14],
            review_blocked=row[15],
            audio_bytes=None if row[16] is None else int(row[16]),
        )

    def audio(self, utterance_id: UUID) -> bytes | None:
        """A stored clip's audio as a WAV file's bytes, or None."""
        row = self._db.execute("SELECT pcm FROM clip_audio WHERE utterance_id = ?", (str(utterance_id),)).fetchone()
        return None if row is None else wav_bytes(bytes(row[0]))

    def count(self) -> int:
        """How many clips are stored."""
        return int(self._db.execute("SELECT COUNT(*) FROM clips").fetchone()[0])

    def close(self) -> None:
        """Close the database."""
        self._db.close()


class _Refused(Exception):
    """A clip of a batch refused inside its transaction (index None: which one is not known yet)."""

    def __init__(self, index: int | None, error: Exception) -> None:
        super().__init__(str(error))
        self.index = index
        self.error = error


def _validate(clip: Clip) -> None:
    try:
        check_id("device id", clip.device_id)
        check_id("household id", clip.household_id)
    except ContractError as err:
        raise ClipRejected(str(err)) from err
    # bool is checked by type, not truthiness: None or "yes" is no consent tag at all.
    if type(clip.review_allowed) is not bool:
        raise ClipRejected("clip has no valid review_allowed tag")
    if type(clip.consent_version) is not int or clip.consent_version < 0:
        raise ClipRejected("clip has no valid consent_version")

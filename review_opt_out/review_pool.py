"""The review pool: the sampler that fills it, and reviewers' assignments from it."""

from __future__ import annotations

import collections
import secrets
import time

from pipeline import clip_queries
from pipeline.database import Database
from pipeline.store import utc_text, wav_bytes
from review_opt_out import audit, heard
from review_opt_out.eligibility import IS_ELIGIBLE, VERDICT_OF
from review_opt_out.errors import NotFound
from review_opt_out.registry_core import (
    RegistryCore,
)


class ReviewPool(RegistryCore):
    """Sampling eligible clips into the pool, and handing them to reviewers one at a time."""

    def sample(self, fraction: float, limit: int = 10_000, batch: int = 100, pause_seconds: float = 0.005) -> int:
        """Consider up to `limit` clips stored since the last pass; return how many were admitted."""
        return self.sample_pass(fraction, limit, batch, pause_seconds)[0]

    def sample_pass(
        self,
        fraction: float,
        limit: int = 10_000,
        batch: int = 100,
        pause_seconds: float = 0.005,
        yield_ratio: float = 9.0,
    ) -> tuple[int, int]:
        """Consider up to `limit` clips stored since the last pass, in transactions of `batch`
        (at most 1,000: one statement binds two values per clip); admit each eligible one
        with probability `fraction`. Returns (admitted, considered): fewer considered than
        `limit` means the sampler has caught up.

        Each batch reads forward from a high-water mark (the clips' insertion order), so a
        pass costs what is new, never a scan of what was considered. It holds the writer
        lock for one small batch at a time (a few ms at 1M clips) and then leaves it free
        `yield_ratio` times as long (at least `pause_seconds`): the sampler is background
        work, so it takes at most a tenth of the lock and clip saves and opt-outs keep the
        rest (on PostgreSQL, whose round trips make a batch slower, it took 44 % of the
        saves' rate without this; with saves at one commit each, a fifth still cost them a
        third on SQLite). It still considers thousands of clips a second. A clip whose rowid
        SQLite reuses after the newest clip was deleted is never considered: it stays out of
        review, which is the safe side.
        """
        rng = secrets.SystemRandom()
        batch = max(1, min(batch, 1_000))
        admitted = considered = 0
        while considered < limit:
            with self.transaction() as db:
                began = time.monotonic()  # the time it holds the lock, not the wait for it
                mark = db.execute("SELECT last_rowid FROM sampler_mark").fetchone()
                rows = clip_queries.judge_after(
                    db, VERDICT_OF, 0 if mark is None else int(mark[0]), min(batch, limit - considered)
                )
                if not rows:
                    break
                # One statement for the batch, not one per clip: a round trip each was most
                # of the batch's time (and of the writer lock's) on PostgreSQL.
                fresh = {
                    str(row[0])
                    for row in db.execute(
                        "INSERT INTO review_considered VALUES "  # noqa: S608 - only placeholders are interpolated
                        + ", ".join(["(?, ?)"] * len(rows))
                        + " ON CONFLICT (clip_id) DO NOTHING RETURNING clip_id",
                        [value for row in rows for value in (row.utterance_id, row.judged)],
                    ).fetchall()
                }
                admitted_now = [
                    (row.utterance_id, secrets.token_urlsafe(16), row.household_id, self._now().isoformat())
                    for row in rows
                    if row.utterance_id in fresh and row.judged == "eligible" and rng.random() < fraction
                ]
                db.executemany("INSERT INTO review_pool VALUES (?, ?, ?, ?)", admitted_now)
                in_batch = len(admitted_now)
                db.execute(
                    "INSERT INTO sampler_mark VALUES (1, ?) "
                    "ON CONFLICT (one) DO UPDATE SET last_rowid = excluded.last_rowid",
                    (rows[-1].order,),
                )
                if in_batch:
                    audit.append(db, "sampler", "pool.admit", "-", admitted=in_batch, considered=len(rows))
            admitted += in_batch
            considered += len(rows)
            time.sleep(max(pause_seconds, yield_ratio * (time.monotonic() - began)))
        return admitted, considered

    def verdicts(self) -> collections.Counter[str]:
        """Clips the sampler considered, by verdict: why the ineligible ones were not reviewable."""
        with self.reading() as db:
            return collections.Counter(
                dict(db.execute("SELECT verdict, COUNT(*) FROM review_considered GROUP BY verdict"))
            )

    def verdict(self, clip_id: str) -> str | None:
        """Whether one clip is reviewable right now, and if not, why (None: no such clip)."""
        with self.reading() as db:
            judged = clip_queries.judge(db, VERDICT_OF, clip_id)
        return None if judged is None else str(judged[1])

    def pool_households(self) -> dict[str, int]:
        """Pool size per household (for tests and the benchmark)."""
        with self.reading() as db:
            return dict(db.execute("SELECT household_id, COUNT(*) FROM review_pool GROUP BY household_id"))

    def _eligible_clip(self, db: Database, clip_id: str) -> str | None:
        """The clip's household if a reviewer may hear it at this moment, else None."""
        judged = clip_queries.judge(db, IS_ELIGIBLE, clip_id)
        return judged[0] if judged is not None and judged[1] else None

    def assigned_transcript(self, reviewer_id: str, pseudonym: str) -> str:
        """The recognizer's text of an open, still-eligible assignment: what the reviewer corrects."""
        with self.reading() as db:
            row = db.execute(
                "SELECT a.clip_id FROM assignments a JOIN review_pool p ON p.pseudonym = a.pseudonym "
                "WHERE a.pseudonym = ? AND a.reviewer_id = ? AND a.status = 'open'",
                (pseudonym, reviewer_id),
            ).fetchone()
            if row is None or self._eligible_clip(db, row[0]) is None:
                raise NotFound("no such assignment")
            text = clip_queries.transcript(db, row[0])
        return "" if text is None else text

    def next_assignment(self, reviewer_id: str) -> str | None:
        """The pseudonym of the reviewer's open assignment, or a newly assigned one, or None."""
        with self.transaction() as db:
            row = db.execute(
                "SELECT a.pseudonym FROM assignments a JOIN review_pool p ON p.pseudonym = a.pseudonym "
                "WHERE a.reviewer_id = ? AND a.status = 'open' LIMIT 1",
                (reviewer_id,),
            ).fetchone()
            if row is not None:
                return str(row[0])
            candidates = db.execute(
                "SELECT p.pseudonym, p.clip_id, p.household_id FROM review_pool p "
                "WHERE p.pseudonym NOT IN (SELECT pseudonym FROM assignments) ORDER BY p.admitted_at LIMIT 50"
            ).fetchall()
            for pseudonym, clip_id, household_id in candidates:
                if self._eligible_clip(db, clip_id) is None:
                    continue  # re-checked: eligibility can change after admission
                db.execute(
                    "INSERT INTO assignments VALUES (?, ?, ?, ?, 'open', ?, NULL)",
                    (pseudonym, clip_id, household_id, reviewer_id, self._now().isoformat()),
                )
                audit.append(db, reviewer_id, "review.assign", pseudonym)
                return str(pseudonym)
            return None

    def reviewer_audio(self, reviewer_id: str, pseudonym: str) -> bytes:
        """The audio (WAV) of an assigned clip, only if the clip is eligible at this moment:
        checked and read in one transaction, so no opt-out can fall between the two."""
        with self.transaction() as db:
            row = db.execute(
                "SELECT a.clip_id, a.household_id FROM assignments a JOIN review_pool p ON p.pseudonym = a.pseudonym "
                "WHERE a.pseudonym = ? AND a.reviewer_id = ? AND a.status = 'open'",
                (pseudonym, reviewer_id),
            ).fetchone()
            eligible = self._eligible_clip(db, row[0]) if row is not None else None
            pcm = clip_queries.pcm(db, row[0]) if eligible is not None else None
            audit.append(db, reviewer_id, "review.fetch" if pcm is not None else "review.fetch_refused", pseudonym)
            if pcm is not None:  # a person can hear it now: the household will see that
                heard.note_heard(db, str(row[0]), str(row[1]), reviewer_id, utc_text(self._now()))
        if pcm is None:
            # One answer for "not yours", "no such id" and "no longer eligible": ids cannot be probed.
            raise NotFound("no such assignment")
        return wav_bytes(pcm)

    def submit(self, reviewer_id: str, pseudonym: str, transcript: str) -> None:
        """Record a corrected transcript for an open, still-eligible assignment."""
        with self.transaction() as db:
            row = db.execute(
                "SELECT clip_id FROM assignments WHERE pseudonym = ? AND reviewer_id = ? AND status = 'open'",
                (pseudonym, reviewer_id),
            ).fetchone()
            if row is None or self._eligible_clip(db, row[0]) is None:
                audit.append(db, reviewer_id, "review.submit_refused", pseudonym)
                raise NotFound("no such assignment")
            db.execute(
                "UPDATE assignments SET status = 'submitted', corrected = ? WHERE pseudonym = ?",
                (transcript, pseudonym),
            )
            if transcript.strip() != (clip_queries.transcript(db, row[0]) or "").strip():
                heard.note_corrected(db, str(row[0]))
            audit.append(db, reviewer_id, "review.submit", pseudonym)

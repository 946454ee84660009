"""Which recordings a person heard: what the household sees of the review it allowed.

A recording counts as heard the first time a reviewer's browser is sent its audio (the
moment a person can hear it), recorded in the same transaction as that fetch's audit
entry. The household sees when, and a pseudonym for the reviewer that is its own: the
same reviewer is "Reviewer 3f2a1c" to one household and another name to the next, so
households cannot compare notes, and nothing leads back to the reviewer's name. A
household that deletes a recording deletes this record of it too (the audit chain keeps
the proof of the fetch, under the pool's pseudonym for the clip).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from pipeline.database import Database, placeholders

# The recordings filter "a person heard it", over the clip store's `clips c`.
HEARD = "c.utterance_id IN (SELECT utterance_id FROM review_heard)"


def reviewer_pseudonym(household_id: str, reviewer_id: str) -> str:
    """The name one household sees for one reviewer (reviewer ids are random 64-bit values)."""
    digest = hashlib.sha256(f"{household_id}\x00{reviewer_id}".encode()).hexdigest()
    return f"Reviewer {digest[:6]}"


def note_heard(db: Database, clip_id: str, household_id: str, reviewer_id: str, at: str) -> None:
    """A reviewer was sent the clip's audio (the first time counts)."""
    db.execute(
        "INSERT INTO review_heard (utterance_id, household_id, reviewer_pseudonym, first_heard_at) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (utterance_id) DO NOTHING",
        (clip_id, household_id, reviewer_pseudonym(household_id, reviewer_id), at),
    )


def note_corrected(db: Database, clip_id: str) -> None:
    """The reviewer changed the recognizer's transcript."""
    db.execute("UPDATE review_heard SET corrected = 1 WHERE utterance_id = ?", (clip_id,))


def of_clips(db: Database, clip_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """For each of these clips a person heard: when, by whom (pseudonym), corrected or not."""
    if not clip_ids:
        return {}
    marks = placeholders(clip_ids)
    rows = db.execute(
        f"SELECT utterance_id, first_heard_at, reviewer_pseudonym, corrected FROM review_heard "  # noqa: S608
        f"WHERE utterance_id IN ({marks})",
        tuple(clip_ids),
    ).fetchall()
    return {str(r[0]): {"at": str(r[1]), "by": str(r[2]), "corrected": bool(r[3])} for r in rows}


def summary(db: Database, household_id: str) -> dict[str, Any]:
    """How many of the household's kept recordings a person heard, the latest when, and
    whether any was heard since review was last turned off (never, by design)."""
    heard, last = db.execute(
        "SELECT count(*), max(first_heard_at) FROM review_heard WHERE household_id = ?", (household_id,)
    ).fetchone()
    latest = db.execute(
        "SELECT review_allowed, changed_at FROM consent_history WHERE household_id = ? ORDER BY version DESC LIMIT 1",
        (household_id,),
    ).fetchone()
    review_off_since = str(latest[1]) if latest is not None and not latest[0] else None
    since_off = 0
    if review_off_since is not None:
        since_off = int(
            db.execute(
                "SELECT count(*) FROM review_heard WHERE household_id = ? AND first_heard_at > ?",
                (household_id, review_off_since),
            ).fetchone()[0]
        )
    return {
        "heard": int(heard),
        "last_heard_at": None if last is None else str(last),
        "review_off_since": review_off_since,
        "heard_since_review_off": since_off,
    }


def forget(db: Database, clip_ids: Sequence[str]) -> None:
    """The household deleted these recordings: nothing of them stays here either."""
    if clip_ids:
        marks = placeholders(clip_ids)
        db.execute(f"DELETE FROM review_heard WHERE utterance_id IN ({marks})", tuple(clip_ids))  # noqa: S608

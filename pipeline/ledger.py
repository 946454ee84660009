"""The utterance ledger's SQL: each utterance's first start, its conflicts, its contest
and the household's tombstones, decided in the transaction that admits or stores."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pipeline.arbitration import ContestRules, Entry, Outcome, decide, is_live
from pipeline.database import Database, placeholders, utc_text

if TYPE_CHECKING:
    from pipeline.store import StartClaim

_LOGGER = logging.getLogger(__name__)

_LEDGER_COLUMNS = "device_id, household_id, review_allowed, consent_version, received_at, capture_started_at"


# Several utterances' rows, each with its id last; the caller appends " IN (?, …)".
_LEDGER_ROWS = f"SELECT {_LEDGER_COLUMNS}, conflicting, utterance_id FROM utterances WHERE utterance_id"  # noqa: S608 - constant


# A clip stored before the ledger knew it, entered from its row (already settled).
_LEDGER_FROM_CLIP = (
    f"INSERT INTO utterances ({_LEDGER_COLUMNS}, conflicting, settled, utterance_id) "  # noqa: S608 - constant
    f"SELECT {_LEDGER_COLUMNS}, CASE WHEN review_blocked = 'conflicting_start' THEN 1 ELSE 0 END, 1, utterance_id "
    "FROM clips WHERE utterance_id"  # the caller appends " IN (?, …)"
)


# Which of several candidates a spoken deletion covers ({values}: one row of placeholders each).
_FORGOTTEN_AMONG = (
    "WITH candidate (position, utterance_id, device_id, household_id, received_at, captured_at) "
    "AS (VALUES {values}) SELECT c.position FROM candidate c WHERE EXISTS "
    "(SELECT 1 FROM forgotten f WHERE f.utterance_id = c.utterance_id AND f.device_id = c.device_id) "
    "OR EXISTS (SELECT 1 FROM forgotten_before b WHERE b.household_id = c.household_id AND "
    "(b.received_before > c.received_at OR (b.captured_since IS NOT NULL "
    "AND c.captured_at >= b.captured_since AND b.received_before > c.captured_at)))"
)


def first_start(db: Database, utterance_id: str) -> Any:
    """The ledger's first start of an utterance: (device, household, review_allowed, version,
    received_at, capture_started_at, conflicting), or None.

    A clip stored before the ledger knew it (an older release, or an entry pruned) is
    entered from its row, so a start sent after that is compared with what is stored.
    """
    return first_starts(db, [utterance_id]).get(utterance_id)


def first_starts(db: Database, utterance_ids: Sequence[str]) -> dict[str, Any]:
    """`first_start` of several utterances in three statements at most: by utterance id."""
    if not utterance_ids:
        return {}
    found = _ledger_rows(db, utterance_ids)
    missing = [i for i in utterance_ids if i not in found]
    if missing:
        query = f"SELECT utterance_id FROM clips WHERE utterance_id IN ({placeholders(missing)})"  # noqa: S608 - placeholders
        stored = [row[0] for row in db.execute(query, missing)]
        if stored:
            db.execute(_LEDGER_FROM_CLIP + f" IN ({placeholders(stored)})", stored)
            found.update(_ledger_rows(db, stored))
    return found


def _ledger_rows(db: Database, utterance_ids: Sequence[str]) -> dict[str, Any]:
    rows = db.execute(_LEDGER_ROWS + f" IN ({placeholders(utterance_ids)})", list(utterance_ids)).fetchall()
    return {str(row[-1]): tuple(row[:-1]) for row in rows}


def enter_contest(
    db: Database, claim: StartClaim, received_at: str, rules: ContestRules
) -> tuple[str, str | None] | None:
    """Enter a live request in its household's contest, in the admitting transaction:
    (contest id, outcome so far), or None when it answers alone."""
    now = datetime.fromisoformat(received_at)
    if not is_live(claim.capture_started_at, now, rules):
        return None  # captured a while ago (an outbox sent late): it contests no live request
    recent = db.execute(
        "SELECT COUNT(*) FROM contest_entries WHERE device_id = ? AND entered_at >= ?",
        (claim.device_id, utc_text(now - timedelta(minutes=1))),
    ).fetchone()[0]
    if recent >= rules.contests_per_minute:
        _LOGGER.warning("device %s enters too many contests: its request answers alone", claim.device_id)
        return None
    opened = db.execute(
        "SELECT utterance_id FROM contest_entries WHERE household_id = ? AND entered_at > ? "
        "AND contest_id = utterance_id ORDER BY entered_at DESC LIMIT 1",
        (claim.household_id, utc_text(now - timedelta(seconds=rules.window_seconds))),
    ).fetchone()
    utterance_id = str(claim.utterance_id)
    contest_id, outcome = utterance_id, None
    if opened is not None:
        members = db.execute(
            "SELECT device_id, outcome FROM contest_entries WHERE contest_id = ?", (opened[0],)
        ).fetchall()
        if any(device == claim.device_id for device, _ in members):
            return None  # the same speaker again: one speaker cannot hear one request twice
        contest_id = str(opened[0])
        if any(decided is not None for _, decided in members):
            outcome = Outcome.CANCELLED.value  # decided already: another speaker is answering
    db.execute(
        "INSERT INTO contest_entries (utterance_id, contest_id, household_id, device_id, entered_at, outcome) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (utterance_id, contest_id, claim.household_id, claim.device_id, received_at, outcome),
    )
    return contest_id, outcome


def decide_contest(db: Database, utterance_id: str, rules: ContestRules) -> Outcome | None:
    """This entrant's outcome, deciding its contest now if `arbitration.decide` says it can be."""
    row = db.execute(
        "SELECT contest_id, outcome FROM contest_entries WHERE utterance_id = ?", (utterance_id,)
    ).fetchone()
    if row is None:
        return Outcome.ANSWERS  # no contest (or one long forgotten): it answers alone
    if row[1] is not None:
        return Outcome(row[1])
    rows = db.execute(
        "SELECT utterance_id, entered_at, finished_at, spoke, recognized, level_db FROM contest_entries "
        "WHERE contest_id = ?",
        (row[0],),
    ).fetchall()
    entries = [
        Entry(
            str(r[0]),
            datetime.fromisoformat(r[1]),
            None if r[2] is None else datetime.fromisoformat(r[2]),
            bool(r[3]),
            bool(r[4]),
            float(r[5]),
        )
        for r in rows
    ]
    opened_at = min(e.entered_at for e in entries)
    decision = decide(entries, opened_at, db.now(), rules)
    if decision is None:
        return None
    db.executemany(
        "UPDATE contest_entries SET outcome = ? WHERE utterance_id = ? AND outcome IS NULL",
        [(outcome.value, entrant) for entrant, outcome in decision.items()],
    )
    return decision[utterance_id]


def mark_conflict(db: Database, utterance_id: str) -> None:
    """The utterance had two tags: whichever was first, nobody may hear it (only ever narrows)."""
    first_start(db, utterance_id)
    db.execute("UPDATE utterances SET conflicting = 1 WHERE utterance_id = ?", (utterance_id,))
    db.execute(
        "UPDATE clips SET review_blocked = COALESCE(review_blocked, 'conflicting_start') WHERE utterance_id = ?",
        (utterance_id,),
    )


def forgotten_by_household(db: Database, utterance_id: str, device_id: str, household_id: str, received_at: str,
               capture_started_at: str) -> bool:  # fmt: skip
    """Whether a spoken deletion already covers this utterance.

    "Forget that" leaves a tombstone for (utterance, device). "Delete everything I said
    today" covers what the cloud first received before it, whichever worker stores it and
    whenever, and what the device captured before it on that day (a request still in an
    outbox the cloud had not seen): the device's clock may only narrow what is kept.
    """
    return bool(forgotten_among(db, [(utterance_id, device_id, household_id, received_at, capture_started_at)]))


def forgotten_among(db: Database, candidates: Sequence[tuple[str, str, str, str, str]]) -> set[int]:
    """`forgotten_by_household` of several (utterance, device, household, received_at,
    capture_started_at) in one statement: the positions of those a deletion covers."""
    if not candidates:
        return set()
    values = ", ".join("(?, ?, ?, ?, ?, ?)" for _ in candidates)
    params = [value for position, candidate in enumerate(candidates) for value in (position, *candidate)]
    rows = db.execute(_FORGOTTEN_AMONG.replace("{values}", values), params).fetchall()
    return {int(row[0]) for row in rows}

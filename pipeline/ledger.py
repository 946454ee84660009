"""The utterance ledger's SQL: each utterance's first start, its conflicts, its contest
and the household's tombstones, decided in the transaction that admits or stores."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pipeline.arbitration import ContestRules, Entry, Outcome, decide, is_live
from pipeline.database import (
    Database,
    utc_text,
)

if TYPE_CHECKING:
    from pipeline.store import StartClaim

_LOGGER = logging.getLogger(__name__)

_LEDGER_COLUMNS = "device_id, household_id, review_allowed, consent_version, received_at, capture_started_at"


_LEDGER_ROW = f"SELECT {_LEDGER_COLUMNS}, conflicting FROM utterances WHERE utterance_id = ?"  # noqa: S608 - constant


# A clip stored before the ledger knew it, entered from its row (already settled).
_LEDGER_FROM_CLIP = (
    f"INSERT INTO utterances ({_LEDGER_COLUMNS}, conflicting, settled, utterance_id) "  # noqa: S608 - constant
    f"SELECT {_LEDGER_COLUMNS}, CASE WHEN review_blocked = 'conflicting_start' THEN 1 ELSE 0 END, 1, utterance_id "
    "FROM clips WHERE utterance_id = ?"
)


def first_start(db: Database, utterance_id: str) -> Any:
    """The ledger's first start of an utterance: (device, household, review_allowed, version,
    received_at, capture_started_at, conflicting), or None.

    A clip stored before the ledger knew it (an older release, or an entry pruned) is
    entered from its row, so a start sent after that is compared with what is stored.
    """
    row = db.execute(_LEDGER_ROW, (utterance_id,)).fetchone()
    if row is not None or not db.execute("SELECT 1 FROM clips WHERE utterance_id = ?", (utterance_id,)).fetchone():
        return row
    db.execute(_LEDGER_FROM_CLIP, (utterance_id,))
    return db.execute(_LEDGER_ROW, (utterance_id,)).fetchone()


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
    return (
        db.execute(
            "SELECT 1 FROM forgotten WHERE utterance_id = ? AND device_id = ? UNION ALL "
            "SELECT 1 FROM forgotten_before WHERE household_id = ? AND (received_before > ? "
            "OR (captured_since IS NOT NULL AND ? >= captured_since AND received_before > ?))",
            (utterance_id, device_id, household_id, received_at, capture_started_at, capture_started_at),
        ).fetchone()
        is not None
    )

"""Clips written in the caller's write transaction: a whole batch in five statements.

One clip at a time this took six statements (six round trips on PostgreSQL) each; a
group commit of twenty clips would spend most of its time waiting on them. The rules are
the utterance ledger's (`pipeline.ledger`), applied to every clip of the batch at once:

* what the ledger recorded wins over what this worker holds: the receipt time of the
  first start (a resend to another worker is no new request) and a conflicting start
  seen by any worker (the clip is never reviewable);
* a clip a spoken deletion covers is settled without being written;
* a row is inserted only if the utterance is not stored yet, so a redelivered utterance
  never touches what is stored; within one batch, the first of two copies wins;
* the audio goes in with its row, or not at all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from contract.audio import bytes_to_seconds
from pipeline.clip_records import Clip
from pipeline.database import Database, placeholders, utc_text
from pipeline.ledger import first_starts, forgotten_among

CLIP_COLUMNS = (
    "utterance_id, device_id, household_id, capture_started_at, received_at, stored_at, duration_seconds, "
    "transcript, end_reason, status, missing_chunks, wake_word, firmware_version, review_allowed, "
    "consent_version, review_blocked, audio_bytes"
)
_ROW = f"({placeholders(CLIP_COLUMNS.split(', '))})"


def insert_clips(
    db: Database, items: Sequence[tuple[Clip, bytes | None]], on_row: Callable[[], None] = lambda: None
) -> list[bool | None]:
    """Each clip's outcome, in order: True if inserted, False if stored already, None if a
    spoken deletion covers it. `on_row` runs once per row written, once the rows and their
    audio are all in (a test's crash point)."""
    ids = [str(clip.utterance_id) for clip, _audio in items]
    unique = list(dict.fromkeys(ids))
    ledger = first_starts(db, unique)
    db.execute(f"UPDATE utterances SET settled = 1 WHERE utterance_id IN ({placeholders(unique)})", unique)  # noqa: S608 - placeholders
    rows = []
    for (clip, audio), utterance_id in zip(items, ids, strict=True):
        first = ledger.get(utterance_id)
        received_at = utc_text(clip.received_at)
        review_blocked = clip.review_blocked
        if first is not None and first[0] == clip.device_id:
            received_at = str(first[4])
            if first[6]:
                review_blocked = review_blocked or "conflicting_start"
        rows.append((
            utterance_id, clip.device_id, clip.household_id, utc_text(clip.capture_started_at), received_at,
            utc_text(clip.stored_at), round(bytes_to_seconds(len(audio or b"")), 3), clip.transcript,
            clip.end_reason, clip.status, clip.missing_chunks, clip.wake_word, clip.firmware_version,
            int(clip.review_allowed), clip.consent_version, review_blocked, None if audio is None else len(audio),
        ))  # fmt: skip
    forgotten = forgotten_among(db, [(row[0], row[1], row[2], row[4], row[3]) for row in rows])
    outcomes: list[bool | None] = [None if position in forgotten else False for position in range(len(items))]
    kept = [position for position in range(len(items)) if position not in forgotten]
    if not kept:
        return outcomes
    inserted = {
        str(row[0])
        for row in db.execute(
            f"INSERT INTO clips ({CLIP_COLUMNS}) VALUES {', '.join([_ROW] * len(kept))} "  # noqa: S608 - constant
            "ON CONFLICT (utterance_id) DO NOTHING RETURNING utterance_id",
            [value for position in kept for value in rows[position]],
        ).fetchall()
    }
    audio_rows = []
    for position in kept:
        utterance_id = ids[position]
        if utterance_id in inserted:
            inserted.discard(utterance_id)  # the first copy in the batch is the one written
            outcomes[position] = True
            if items[position][1] is not None:
                audio_rows.append((utterance_id, items[position][1]))
    if audio_rows:
        db.execute(
            f"INSERT INTO clip_audio (utterance_id, pcm) VALUES {', '.join(['(?, ?)'] * len(audio_rows))}",  # noqa: S608 - placeholders
            [value for row in audio_rows for value in row],
        )
    for _written in range(outcomes.count(True)):  # each row is in, with its audio
        on_row()
    return outcomes

"""One speaker answers: a stream's side of its household's contest (decided in the database).

When several speakers of one household hear the same words, `pipeline.ledger` enters each
stream in one contest and decides it in the transaction that stores; this module only
asks the database how it went and acts on it: the losers are told at once and keep
nothing. See `pipeline.arbitration` for the rules.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time

from contract.messages import EndReason, RecognitionResult, UtteranceCancelled
from pipeline.arbitration import Outcome, speech_level_db
from pipeline.feeding import show_partial
from pipeline.streams import Stream
from pipeline.worker_parts import WorkerParts

_LOGGER = logging.getLogger(__name__)

# A contested request asks the database this often whether its contest is decided: only
# while several speakers of one household stream the same words, for about a second.
_CONTEST_POLL_SECONDS = 0.05
CONTEST_CHECK_SECONDS = 0.25  # while still streaming: has another speaker already won?


def undecided(stream: Stream) -> bool:
    """Whether the stream is in a contest still worth asking about (alone once the window
    closed: nobody can join but to lose, so no more asking)."""
    return stream.contest_id is not None and stream.outcome is None and not stream.alone


async def check(parts: WorkerParts, stream: Stream) -> None:
    """While a contested stream runs: learn whether another speaker already won it, and
    whether it has a rival at all (a speaker alone once the window closed shows partials)."""
    if stream.contest_id is None or stream.outcome is not None:
        return
    loop = asyncio.get_running_loop()
    utterance_id = stream.start.utterance_id
    outcome = await loop.run_in_executor(parts.contest_io, parts.contests.contest_outcome, utterance_id)
    if outcome is not None:
        stream.outcome = outcome
        if outcome is Outcome.CANCELLED and not stream.cancelled:
            lose(parts, stream)
    elif time.monotonic() - stream.admitted_at >= parts.contest_rules.window_seconds:
        entrants = await loop.run_in_executor(parts.contest_io, parts.contests.contest_entrants, utterance_id)
        stream.alone = entrants == 1
        show_partial(parts, stream)


async def settle(parts: WorkerParts, stream: Stream, end_reason: EndReason, final: RecognitionResult) -> None:
    """Report how this entrant ended, then wait (bounded by the contest rules) for the decision."""
    if stream.contest_id is None or stream.outcome is not None:
        return
    live = stream.live_audio
    loop = asyncio.get_running_loop()
    utterance_id = stream.start.utterance_id
    outcome = await loop.run_in_executor(
        parts.contest_io,
        functools.partial(
            parts.contests.settle_contest,
            utterance_id,
            parts.contest_rules,
            spoke=end_reason in (EndReason.SILENCE, EndReason.MAX_LENGTH) and len(live) > 0,
            recognized=bool(final.text.strip()),
            level_db=speech_level_db(live),
        ),
    )
    while outcome is None:
        await asyncio.sleep(_CONTEST_POLL_SECONDS)
        outcome = await loop.run_in_executor(
            parts.contest_io, parts.contests.contest_outcome, utterance_id, parts.contest_rules
        )
    stream.outcome = outcome


def lose(parts: WorkerParts, stream: Stream) -> None:
    """Another speaker of the household answers: this one is told at once and keeps nothing."""
    stream.cancelled = True
    stream.wake.set()
    parts.stats.arbitration_cancelled += 1
    parts.publish(stream.start.device_id, UtteranceCancelled(utterance_id=stream.start.utterance_id))
    _LOGGER.info("utterance %s: another speaker of the household answers", stream.start.utterance_id)

"""Serving one utterance: admitted by the database, fed as it arrives, ended, then stored.

Each admitted start gets a task running `serve()`. The task owns its stream (and the
quota it holds) from then on, whatever follows: a stream ends whole, capped, out of time,
cancelled by its household's contest, or let go (the broker went away, or the worker
stops: its device sends it all again, whole, to a worker that is there).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from contract import topics
from contract.errors import ContractError
from contract.messages import UtteranceStored
from pipeline import contest_watch
from pipeline.arbitration import Outcome
from pipeline.device_claims import check_enrolment
from pipeline.feeding import feed
from pipeline.recognizer import StreamingRecognizer
from pipeline.store import StartClaim
from pipeline.storing import finish
from pipeline.streams import Stream, StreamBook
from pipeline.worker_parts import WorkerParts

_LOGGER = logging.getLogger(__name__)


async def serve(parts: WorkerParts, book: StreamBook, stream: Stream) -> None:
    """The whole life of one stream, from its admission to its receipt."""
    utterance_id = stream.start.utterance_id
    try:
        if await _admit(parts, stream):
            status = await _receive(parts, stream)
            if status == "let_go":
                parts.stats.let_go += 1
            elif not stream.followed:
                # The device sent nothing after its start: it followed another worker's
                # claim (or died before saying a word). No speech reached us to keep.
                parts.stats.unfollowed += 1
            elif not stream.cancelled:
                await finish(parts, stream, status)
        stream.settled = stream.settled or stream.cancelled
    except ContractError as err:
        parts.reject(err.code, topics.utterance(stream.start.device_id, utterance_id, topics.UtterancePart.START))
    except Exception:
        _LOGGER.exception("utterance %s failed", utterance_id)
        parts.stats.rejected["internal_error"] += 1
    finally:
        # household_id is set only once the household quota was charged.
        parts.quotas.release(stream.start.device_id, stream.household_id)
        book.closed(stream)


async def _admit(parts: WorkerParts, stream: Stream) -> bool:
    """Record the start in the database and act on what it decides; then make its recognizer."""
    loop = asyncio.get_running_loop()
    start = stream.start
    claim = StartClaim(
        start.utterance_id,
        start.device_id,
        start.household_id,
        start.review_allowed,
        start.consent_version,
        start.capture_started_at,
    )
    known = await loop.run_in_executor(parts.io, parts.store.admit_start, claim, parts.contest_rules)
    if stream.let_go:
        return False
    if known.foreign:
        raise ContractError("identity_mismatch", "utterance id belongs to another device")
    if known.conflicting:
        # Recorded by the database in the same transaction: whichever worker stores this
        # utterance (or stored it), nobody may review it.
        raise ContractError("conflicting_start", "a second start for this utterance carries another tag")
    check_enrolment(start.household_id, known.household_id)
    stream.received_at = known.received_at
    if known.forgotten or known.stored:
        # Deleted by its household already: never served again. Stored: redelivered after
        # a restart; what is stored stays as it is.
        parts.stats.duplicates += 1
        stream.settled = True
        parts.publish(start.device_id, UtteranceStored(utterance_id=start.utterance_id))
        return False
    parts.quotas.admit_household(start.household_id)
    stream.household_id = start.household_id
    stream.keep_audio = known.keep_audio
    stream.contest_id, stream.outcome = known.contest_id, known.outcome
    stream.admitted_at = time.monotonic()
    if stream.outcome is Outcome.CANCELLED:
        contest_watch.lose(parts, stream)  # its contest was decided: another speaker is answering
    if parts.model is not None:
        # Creating a recognizer costs up to ~60 ms of CPU: never on the loop.
        grammar = list(parts.settings.grammar)
        stream.recognizer = await loop.run_in_executor(parts.cpu, StreamingRecognizer, parts.model, grammar)
    return True


def _deadline(parts: WorkerParts, stream: Stream) -> tuple[float, str]:
    """The next moment (connected seconds) at which the stream must end, and its status then."""
    ingest = parts.settings.ingest
    deadlines = [(stream.opened_at + ingest.max_utterance_seconds + ingest.end_grace_seconds, "timed_out")]
    if stream.end is not None:
        deadlines.append((stream.end_heard_at + ingest.gap_wait_seconds, "incomplete"))
    elif stream.heard_epoch == parts.clock.epoch:
        # Silence only counts once the device has been heard since the last reconnect:
        # it may still be reconnecting and about to resend what the broker lost.
        deadlines.append((stream.heard_at + ingest.stream_timeout_seconds, "timed_out"))
    return min(deadlines)


async def _receive(parts: WorkerParts, stream: Stream) -> str:
    """Feed audio as it arrives until the stream is whole, capped, or out of time."""
    clock = parts.clock
    while True:
        stream.wake.clear()
        if stream.let_go:
            return "let_go"
        if stream.cancelled:
            return "cancelled"
        await feed(parts, stream)
        if stream.wake_rejected:
            return "wake_rejected"
        if stream.capped:
            return "complete"
        end = stream.end
        if end is not None and stream.reassembler.next_sequence >= end.chunk_count and not stream.reassembler.waiting:
            return "complete"
        if parts.stopping.is_set():
            return "incomplete" if end is not None else "timed_out"
        deadline, status = _deadline(parts, stream)
        now = clock.now()
        if clock.online and now >= deadline:
            return status if stream.heard_epoch == clock.epoch else "let_go"
        timeout = max(deadline - now, 0.01) if clock.online else None
        if contest_watch.undecided(stream):
            await contest_watch.check(parts, stream)
            if stream.cancelled:
                return "cancelled"
            check_seconds = contest_watch.CONTEST_CHECK_SECONDS
            timeout = check_seconds if timeout is None else min(timeout, check_seconds)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stream.wake.wait(), timeout)

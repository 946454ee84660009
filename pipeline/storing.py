"""The end of a stream: its final transcript goes to the device, then its clip is saved.

The answer is published first (the user waits for it; the save's fsyncs need not hold it
up), and the receipt (`UtteranceStored`) only after the save is durable: until then the
device keeps the utterance and would send it again. Every clip carries the consent tag
its start claimed; what the cloud found against review (`review_blocked`) only narrows it.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from uuid import UUID

from contract.messages import EndReason, RecognitionResult, UtteranceStored
from pipeline import contest_watch
from pipeline.arbitration import Outcome
from pipeline.feeding import feed, show_partial
from pipeline.store import Clip
from pipeline.streams import Stream
from pipeline.worker_parts import WorkerParts

_LOGGER = logging.getLogger(__name__)

# Audio that is not kept: a press of mute, or a wake in which nobody spoke.
_NO_AUDIO_REASONS = {EndReason.MUTED, EndReason.NO_SPEECH, EndReason.WAKE_REJECTED}


async def finish(parts: WorkerParts, stream: Stream, status: str) -> None:
    """Recognize what is left, answer, and store the clip (unless another speaker answers)."""
    if stream.wake_rejected:
        await _count_false_wake(parts, stream)
        return
    if not stream.capped:
        for pcm in stream.reassembler.skip_gaps(stream.end.chunk_count if stream.end else None):
            stream.audio += pcm[: parts.limits.max_audio_bytes - len(stream.audio)]
    await feed(parts, stream, last=True)
    missing = stream.reassembler.missing
    parts.stats.duplicates += stream.reassembler.duplicates
    end_reason = stream.end.reason if stream.end else EndReason.CANCELLED
    if stream.capped:
        end_reason = EndReason.MAX_LENGTH
    elif end_reason is EndReason.ABANDONED:
        status = "abandoned"
    elif status == "complete" and missing:
        status = "incomplete"
    final = await _final(parts, stream, end_reason)
    await contest_watch.settle(parts, stream, end_reason, final)
    show_partial(parts, stream)
    if stream.outcome is Outcome.CANCELLED:
        contest_watch.lose(parts, stream)  # another speaker of the household answers: nothing of this one is kept
        stream.settled = True
        return
    # Muted: the user cut the request off. No speech: nothing was said. Don't keep:
    # the household asked for nothing to be kept. A record of the request (with its
    # tag) stays; the audio is never written, and with it goes the transcript.
    keep_audio = stream.keep_audio and end_reason not in _NO_AUDIO_REASONS
    clip = _clip(stream, final.text if keep_audio else "", end_reason, status, missing)
    parts.publish(stream.start.device_id, final)
    parts.stats.finals_published += 1
    await _save_and_confirm(parts, stream, clip, bytes(stream.audio) if keep_audio else None, status)
    _LOGGER.info(
        "stored utterance %s: %s (%s), %d missing chunks, audio kept=%s",
        clip.utterance_id,
        status,
        end_reason.value,
        missing,
        keep_audio,
    )


async def _count_false_wake(parts: WorkerParts, stream: Stream) -> None:
    """A request the second wake check refused: its contest learns it never spoke (so the
    others need not wait for it), and only a record of it is kept, with its consent tag
    and without audio or words, so a household and an operator can see how often."""
    utterance_id = stream.start.utterance_id
    nothing = RecognitionResult(utterance_id=utterance_id, final=True, text="", not_recognized="wake_rejected")
    await contest_watch.settle(parts, stream, EndReason.WAKE_REJECTED, nothing)
    # "incomplete": the cloud cut the stream off; why is the end reason.
    clip = _clip(stream, "", EndReason.WAKE_REJECTED, "incomplete", 0)
    await _save_and_confirm(parts, stream, clip, None, "wake_rejected")


async def _save_and_confirm(parts: WorkerParts, stream: Stream, clip: Clip, audio: bytes | None, counted: str) -> None:
    """Save the clip, then give the device its receipt (counted under `counted`)."""
    saved = await parts.saves.save(clip, audio)  # durable when it returns: shared with the saves waiting beside it
    # Only now may the device forget the utterance.
    stream.settled = True
    parts.publish(stream.start.device_id, UtteranceStored(utterance_id=clip.utterance_id))
    parts.stats.receipts += 1
    if saved:
        parts.stats.stored[counted] += 1
    else:
        parts.stats.duplicates += 1  # another worker stored it first
        if stream.review_blocked is not None:
            block_review(parts, clip.utterance_id)


def block_review(parts: WorkerParts, utterance_id: UUID) -> None:
    """Rule review out for an utterance, stored or not yet: recorded in the database, so
    the worker that stores it (or stored it) blocks it too. It only ever narrows, and
    needs no order with the save: a save reads the ledger's flag in its own transaction."""
    future = asyncio.get_running_loop().run_in_executor(parts.io, parts.store.note_conflict, utterance_id)
    future.add_done_callback(_log_failure)


async def _final(parts: WorkerParts, stream: Stream, end_reason: EndReason) -> RecognitionResult:
    utterance_id = stream.start.utterance_id
    muted = end_reason is EndReason.MUTED
    if stream.recognizer is not None and not muted:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(parts.cpu, stream.recognizer.finish, utterance_id)
    return RecognitionResult(
        utterance_id=utterance_id,
        final=True,
        text="",
        not_recognized="muted" if muted else "no_recognizer",
    )


def _clip(stream: Stream, transcript: str, end_reason: EndReason, status: str, missing: int) -> Clip:
    start = stream.start
    return Clip(
        utterance_id=start.utterance_id,
        device_id=start.device_id,
        household_id=start.household_id,
        capture_started_at=start.capture_started_at,
        received_at=stream.received_at or datetime.now(UTC),  # the ledger's wins at the save
        stored_at=datetime.now(UTC),
        duration_seconds=0.0,  # the store measures the audio it writes
        transcript=transcript,
        end_reason=end_reason.value,
        status=status,
        missing_chunks=missing,
        wake_word=start.wake_word,
        firmware_version=start.firmware_version,
        review_allowed=start.review_allowed,
        consent_version=start.consent_version,
        review_blocked=stream.review_blocked,
    )


def _log_failure(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        _LOGGER.error("could not narrow review of a stored clip", exc_info=future.exception())

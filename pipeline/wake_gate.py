"""Where a stream meets the cloud's second wake check (`pipeline.wake_check`).

Recognition waits until the pre-roll and `tail_seconds` after it are in; then the check
runs once, on the worker's CPU threads. Refused, the device is told at once (it stops and
plays nothing) and the stream ends as `wake_rejected`: `pipeline.storing` keeps only its
counted record. A stream without pre-roll has nothing to check and is served as before.
"""

from __future__ import annotations

import asyncio
import logging

from contract.audio import seconds_to_bytes
from contract.messages import UtteranceCancelled
from pipeline.streams import Stream
from pipeline.worker_parts import WorkerParts

_LOGGER = logging.getLogger(__name__)


async def passed(parts: WorkerParts, stream: Stream, *, last: bool = False) -> bool:
    """Whether the stream may be recognized now (False: wait for more audio, or refused)."""
    verifier = parts.wake_verifier
    if stream.wake_checked or verifier is None:
        return not stream.wake_rejected
    preroll = stream.whole_preroll_bytes(last=last)
    if preroll is None:
        return False  # the pre-roll is not whole yet
    if preroll == 0:
        stream.wake_checked = True
        return True
    heard_bytes = preroll + seconds_to_bytes(parts.settings.wake_check.tail_seconds)
    if not last and stream.end is None and not stream.capped and len(stream.audio) < heard_bytes:
        return False  # the word may end just after the pre-roll: wait for the tail
    stream.wake_checked = True
    pcm = bytes(stream.audio[:heard_bytes])
    loop = asyncio.get_running_loop()
    verdict = await loop.run_in_executor(parts.cpu, verifier.check, stream.start.wake_word, pcm)
    parts.stats.wake_checks += verdict.heard is not None
    parts.stats.wake_check_cpu_seconds += verdict.cpu_seconds
    if verdict.failed is not None:
        # Fail closed for review, open for the household: the request is still answered,
        # but a wake nobody could confirm never reaches a reviewer.
        stream.review_blocked = stream.review_blocked or "wake_check_failed"
        parts.stats.wake_check_failures += 1
        _LOGGER.error("utterance %s: the wake check could not run (%s)", stream.start.utterance_id, verdict.failed)
    if verdict.heard is False:
        _refuse(parts, stream)
        return False
    return True


def _refuse(parts: WorkerParts, stream: Stream) -> None:
    stream.wake_rejected = True
    stream.wake.set()
    parts.stats.wake_rejected += 1
    start = stream.start
    parts.publish(start.device_id, UtteranceCancelled(utterance_id=start.utterance_id, reason="wake_rejected"))
    _LOGGER.info("utterance %s: the second wake check did not hear %r", start.utterance_id, start.wake_word)

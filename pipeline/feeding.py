"""Feeding a stream's audio to its recognizer as it arrives, and showing partials.

Recognition runs in the worker's CPU threads, never on the loop. A partial transcript is
held back while its speaker may yet lose its household's contest (`pipeline.contest_watch`):
a speaker that will not answer must not show words on its display.
"""

from __future__ import annotations

import asyncio

from contract.audio import seconds_to_bytes
from contract.messages import RecognitionResult
from pipeline import wake_gate
from pipeline.arbitration import Outcome
from pipeline.streams import Stream
from pipeline.worker_parts import WorkerParts


async def feed(parts: WorkerParts, stream: Stream, *, last: bool = False) -> None:
    """Give the recognizer the audio that arrived since the last call."""
    # The second wake check comes first: with or without a recognizer, a false wake keeps nothing.
    if not await wake_gate.passed(parts, stream, last=last) or stream.recognizer is None:
        return
    if not stream.feeding:
        # The wake word lies in the pre-roll, and a recognizer hears it as words of the
        # request: only the pre-roll's last moments are recognized (all of it is stored).
        # Known once every chunk before the first live one is in (or at the very end).
        preroll = stream.whole_preroll_bytes(last=last)
        if preroll is None:
            return
        keep = seconds_to_bytes(parts.settings.ingest.recognized_preroll_seconds)
        stream.fed_bytes = min(max(preroll - keep, 0), len(stream.audio))
        stream.feeding = True
    if stream.fed_bytes >= len(stream.audio):
        return
    pcm = bytes(stream.audio[stream.fed_bytes :])
    stream.fed_bytes += len(pcm)
    partial = await asyncio.get_running_loop().run_in_executor(parts.cpu, stream.recognizer.accept, pcm)
    if partial is not None:
        stream.held_partial = partial
        show_partial(parts, stream)


def show_partial(parts: WorkerParts, stream: Stream) -> None:
    """The latest partial, unless the speaker may yet lose its household's contest (then
    it waits: shown once the speaker is known to be alone or to answer)."""
    shown = stream.contest_id is None or stream.alone or stream.outcome is Outcome.ANSWERS
    if stream.held_partial is None or not shown:
        return
    parts.publish(
        stream.start.device_id,
        RecognitionResult(utterance_id=stream.start.utterance_id, final=False, text=stream.held_partial),
    )
    stream.held_partial = None
    parts.stats.partials_published += 1

"""The utterances a worker holds: open streams, recently finished ones, and orphan chunks.

Every message after a start is routed here, on the loop, in O(1): a chunk goes straight
into its stream's audio buffer (in order, through the reassembler, up to the cloud's own
length limit); one that arrives before its start waits, bounded, as an orphan until the
start comes or its time is up. Nothing here waits or does I/O.
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from contract import topics
from contract.errors import ContractError
from contract.messages import FLAG_PREROLL, AudioChunk, UtteranceEnd, UtteranceStart
from pipeline.arbitration import Outcome
from pipeline.device_claims import ConsentTag, StreamLimits
from pipeline.reassembly import Reassembler
from pipeline.recognizer import StreamingRecognizer
from pipeline.worker_parts import WorkerParts

_FINISHED_REMEMBERED = 10_000  # recent utterances answered from memory; older ones from the store


class Stream:
    """One utterance in progress."""

    def __init__(self, start: UtteranceStart, limits: StreamLimits, now: float, epoch: int) -> None:
        self.start = start
        self.tag = ConsentTag.of(start)
        self.received_at: datetime | None = None  # the database's, at the first start any worker admitted
        self.reassembler = Reassembler(limits.window_chunks)
        self.audio = bytearray()
        self.capped = False  # reached the cloud's max_utterance_seconds
        self.end: UtteranceEnd | None = None
        self.end_heard_at = 0.0
        self.opened_at = now
        self.heard_at = now
        self.heard_epoch = epoch  # the broker connection in which the device was last heard
        self.household_id: str | None = None  # resolved from the enrolment at admission
        self.keep_audio = True
        self.review_blocked: str | None = None
        self.recognizer: StreamingRecognizer | None = None
        self.fed_bytes = 0
        self.feeding = False  # recognition starts once the pre-roll is whole (see pipeline.feeding)
        self.wake_checked = False  # the cloud's second wake check ran (or had nothing to check)
        self.wake_rejected = False  # it did not hear the wake word: nothing is recognized or kept
        self.preroll_chunks: dict[int, int] = {}  # sequence -> PCM bytes, of chunks flagged pre-roll
        self.first_live_sequence: int | None = None  # the first chunk from after the wake word
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.contest_id: str | None = None  # its household's contest, in the database (None: answers alone)
        self.outcome: Outcome | None = None  # what the contest decided for it, once known
        self.admitted_at = time.monotonic()
        self.alone = False  # its contest's window closed with no rival: it may show partials
        self.held_partial: str | None = None  # the latest partial transcript not shown yet
        self.cancelled = False  # another speaker of the household answers: nothing is kept
        self.followed = False  # a chunk or the end came after the claim
        self.let_go = False  # the broker connection broke, or we stop: the device sends it all again
        # Until settled (stored, a stored duplicate, deleted before it came, or cancelled): a
        # start sent again is served afresh, never answered "stored" from memory.
        self.settled = False

    def whole_preroll_bytes(self, *, last: bool = False) -> int | None:
        """The pre-roll's length once every chunk before the first live one is in (or at the
        very end); None while some of it may still come."""
        live = self.first_live_sequence
        if not last and (live is None or self.reassembler.next_sequence < live):
            return None
        return sum(size for seq, size in self.preroll_chunks.items() if live is None or seq < live)

    @property
    def live_audio(self) -> bytes:
        """The audio after the pre-roll: what the speaker heard after its wake word."""
        return bytes(self.audio[sum(self.preroll_chunks.values()) :])


@dataclass
class Orphans:
    """Chunks that arrived before their start message (or whose start was rejected)."""

    device_id: str
    first_seen: float
    chunks: list[AudioChunk] = field(default_factory=list)
    end: UtteranceEnd | None = None


class StreamBook:
    """Open streams, the finished ones a resent start is answered from, and orphans."""

    def __init__(self, parts: WorkerParts) -> None:
        self._parts = parts
        self.open: dict[UUID, Stream] = {}
        self._finished: collections.OrderedDict[UUID, ConsentTag] = collections.OrderedDict()
        self._orphans: dict[UUID, Orphans] = {}
        self._orphan_chunks = 0

    def finished_tag(self, utterance_id: UUID) -> ConsentTag | None:
        """The tag of a recently settled utterance, or None."""
        return self._finished.get(utterance_id)

    def opened(self, start: UtteranceStart) -> tuple[Stream, Orphans | None]:
        """A new stream for this start, and what already came for it from the same device."""
        clock = self._parts.clock
        stream = Stream(start, self._parts.limits, clock.now(), clock.epoch)
        self.open[start.utterance_id] = stream
        orphans = self._orphans.pop(start.utterance_id, None)
        if orphans is not None:
            self._orphan_chunks -= len(orphans.chunks)
            if orphans.device_id != start.device_id:
                orphans = None
        return stream, orphans

    def closed(self, stream: Stream) -> None:
        """The stream's task ended: remember it as done only if it was."""
        utterance_id = stream.start.utterance_id
        self.open.pop(utterance_id, None)
        # A start of one we let go, nobody followed, or failed to store, sent again, must
        # be served (answering "stored" would lose it).
        if stream.settled:
            self._finished[utterance_id] = stream.tag
        while len(self._finished) > _FINISHED_REMEMBERED:
            self._finished.popitem(last=False)

    def on_chunk(self, parsed: topics.UtteranceTopic, chunk: AudioChunk) -> None:
        """Route a chunk to its stream, count a late duplicate, or keep it as an orphan."""
        limits = self._parts.limits
        limits.check_sequence(chunk.sequence)
        stream = self._heard(parsed)
        if stream is not None:
            self.add_chunk(stream, chunk)
        elif parsed.utterance_id in self._finished:
            self._parts.stats.duplicates += 1
        else:
            if chunk.sequence >= limits.window_chunks:
                raise ContractError("sequence_out_of_window", "chunk far ahead of a stream that has not started")
            orphans = self._orphan_entry(parsed)
            orphans.chunks.append(chunk)
            self._orphan_chunks += 1

    def on_end(self, parsed: topics.UtteranceTopic, end: UtteranceEnd) -> None:
        """Route an end (its own id already checked against its topic)."""
        stream = self._heard(parsed)
        if stream is not None:
            self.set_end(stream, end)
        elif end.utterance_id in self._finished:
            self._parts.stats.duplicates += 1
        else:
            self._orphan_entry(parsed).end = end

    def add_chunk(self, stream: Stream, chunk: AudioChunk) -> None:
        """Reassemble a chunk into its stream, up to the cloud's length limit."""
        stream.followed = True
        if stream.capped:
            self._parts.stats.duplicates += 1  # past the cloud's length limit: not kept
            return
        limits = self._parts.limits
        if not chunk.flags & FLAG_PREROLL:
            if stream.first_live_sequence is None or chunk.sequence < stream.first_live_sequence:
                stream.first_live_sequence = chunk.sequence
        elif len(stream.preroll_chunks) < limits.window_chunks:
            stream.preroll_chunks[chunk.sequence] = len(chunk.pcm)
        for pcm in stream.reassembler.add(chunk):
            room = limits.max_audio_bytes - len(stream.audio)
            stream.audio += pcm[:room]
            if len(pcm) >= room:
                stream.capped = True
                break
        stream.wake.set()

    def set_end(self, stream: Stream, end: UtteranceEnd) -> None:
        """The device says how many chunks there are and why it stopped (the first end counts)."""
        stream.followed = True
        if stream.end is None:
            stream.end = end
            stream.end_heard_at = self._parts.clock.now()
        stream.wake.set()

    def sweep_orphans(self) -> tuple[int, int]:
        """Drop orphans whose start never came (without a consent tag they cannot be kept):
        (chunks, streams) dropped."""
        cutoff = self._parts.clock.now() - self._parts.settings.ingest.stream_timeout_seconds
        expired = [u for u, o in self._orphans.items() if o.first_seen < cutoff]
        chunks = sum(len(self._orphans.pop(utterance_id).chunks) for utterance_id in expired)
        self._orphan_chunks -= chunks
        return chunks, len(expired)

    def _heard(self, parsed: topics.UtteranceTopic) -> Stream | None:
        """The open stream a chunk or end belongs to (its device now heard), or None."""
        stream = self.open.get(parsed.utterance_id)
        if stream is not None:
            if stream.start.device_id != parsed.device_id:
                raise ContractError("identity_mismatch", "message from another device than the stream's")
            stream.heard_at = self._parts.clock.now()
            stream.heard_epoch = self._parts.clock.epoch
            stream.followed = True
        return stream

    def _orphan_entry(self, parsed: topics.UtteranceTopic) -> Orphans:
        max_orphans = self._parts.settings.ingest.max_orphan_chunks
        orphans = self._orphans.get(parsed.utterance_id)
        if orphans is None:
            if len(self._orphans) >= max_orphans:
                raise ContractError("orphan_overrun", "too many streams without a start message")
            orphans = Orphans(parsed.device_id, self._parts.clock.now())
            self._orphans[parsed.utterance_id] = orphans
        if orphans.device_id != parsed.device_id:
            raise ContractError("identity_mismatch", "message from another device than the stream's")
        if self._orphan_chunks >= max_orphans:
            raise ContractError("orphan_overrun", "too many chunks without a start message")
        return orphans

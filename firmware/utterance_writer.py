"""Front-end events into stream messages: what the uplink sends for each utterance.

Runs on the audio thread. A wake opens a stream; its audio leaves in the contract's
160 ms chunks (the front end's 80 ms frames paired up), the pre-roll's tail as a short
chunk of its own flagged as pre-roll; the start carries the household's consent tag as
this device last saw it *signed by the consent service* (unknown consent is sent as
`review_allowed=false`: fail closed). If the outbox is full, the utterance is abandoned
explicitly: its unsent audio is dropped and an end with reason `abandoned` says how much
the cloud got. Delivery itself (acknowledgements, claims, receipts, resends) is the
outbox's and the uplink's.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID

from contract import topics
from contract.audio import bytes_to_seconds, seconds_to_bytes
from contract.messages import (
    CHUNK_SECONDS,
    FLAG_PREROLL,
    AudioChunk,
    AudioFormat,
    EndReason,
    UtteranceEnd,
    UtteranceStart,
    encode_json,
)
from firmware import __version__
from firmware.consent_cache import ConsentCache
from firmware.events import FrontEndEvent, SpeechEnded, UtteranceAudio, WakeDetected
from firmware.outbox import Out, Outbox, UplinkStats

_LOGGER = logging.getLogger("firmware.uplink")


@dataclass
class _Stream:
    """One utterance being sent."""

    utterance_id: UUID
    wake_word: str
    wake_score: float
    woke_at: datetime
    next_sequence: int = 0
    started: bool = False
    abandoned: bool = False
    pending: bytearray = field(default_factory=bytearray)  # audio waiting to fill a whole chunk
    pending_preroll: bool = False


class UtteranceWriter:
    """Turns one device's front-end events into its utterances' messages in the outbox."""

    def __init__(
        self, device_id: str, household_id: str, consent: ConsentCache, outbox: Outbox, stats: UplinkStats
    ) -> None:
        self._device_id = device_id
        self._household_id = household_id
        self._consent = consent
        self._outbox = outbox
        self._cond: threading.Condition = outbox.cond
        self._stats = stats
        self._streams: dict[UUID, _Stream] = {}

    def handle(self, event: FrontEndEvent) -> None:
        """Front-end subscriber: turn events into stream messages."""
        if isinstance(event, WakeDetected):
            self._streams[event.utterance_id] = _Stream(
                event.utterance_id, event.wake_word, event.score, datetime.now(UTC)
            )
            with self._cond:
                self._outbox.open(event.utterance_id)
        elif isinstance(event, UtteranceAudio):
            stream = self._streams.get(event.utterance_id)
            if stream is not None and not stream.abandoned:
                self._stream_audio(stream, event)
        elif isinstance(event, SpeechEnded):
            stream = self._streams.pop(event.utterance_id, None)
            if stream is not None and not stream.abandoned:
                if not stream.started:
                    self._open(stream, preroll_seconds=0.0)
                if not self._send_chunks(stream, flush=True):
                    return
                end = UtteranceEnd(
                    utterance_id=stream.utterance_id, reason=event.reason, chunk_count=stream.next_sequence
                )
                self._outbox.enqueue(Out(stream.utterance_id, "", encode_json(end), part=topics.UtterancePart.END))

    def stop_sending(self, utterance_id: UUID) -> None:
        """The cloud cancelled it: the audio thread sends no more of its audio and no end."""
        stream = self._streams.get(utterance_id)
        if stream is not None:
            stream.abandoned = True

    def _open(self, stream: _Stream, preroll_seconds: float) -> None:
        review_allowed, consent_version = self._consent.current()
        start = UtteranceStart(
            device_id=self._device_id,
            household_id=self._household_id,
            utterance_id=stream.utterance_id,
            capture_started_at=stream.woke_at - timedelta(seconds=preroll_seconds),
            audio_format=AudioFormat(),
            wake_word=stream.wake_word,
            wake_score=min(max(stream.wake_score, 0.0), 1.0),
            firmware_version=__version__,
            review_allowed=review_allowed,
            consent_version=consent_version,
        )
        stream.started = True
        topic = topics.utterance(self._device_id, stream.utterance_id, topics.UtterancePart.START)
        self._outbox.enqueue(Out(stream.utterance_id, topic, encode_json(start), part=topics.UtterancePart.START))

    def _stream_audio(self, stream: _Stream, event: UtteranceAudio) -> None:
        preroll = event.sequence == 0
        if not stream.started:
            self._open(stream, preroll_seconds=bytes_to_seconds(len(event.audio)) if preroll else 0.0)
        if preroll != stream.pending_preroll and not self._send_chunks(stream, flush=True):
            return  # the pre-roll's tail goes out as a short chunk of its own, flagged as such
        stream.pending_preroll = preroll
        stream.pending += event.audio
        self._send_chunks(stream, flush=False)

    def _send_chunks(self, stream: _Stream, *, flush: bool) -> bool:
        """Send the pending audio in whole contract-sized chunks (and the rest too if `flush`)."""
        step = seconds_to_bytes(CHUNK_SECONDS)
        audio = topics.UtterancePart.AUDIO
        flags = FLAG_PREROLL if stream.pending_preroll else 0
        while len(stream.pending) >= step or (flush and stream.pending):
            pcm = bytes(stream.pending[:step])
            chunk = AudioChunk(sequence=stream.next_sequence, flags=flags, pcm=pcm)
            if not self._outbox.enqueue(Out(stream.utterance_id, "", chunk.encode(), audio_bytes=len(pcm), part=audio)):
                self._abandon(stream)
                return False
            del stream.pending[:step]
            stream.next_sequence += 1
        return True

    def _abandon(self, stream: _Stream) -> None:
        """Drop the unsent audio of an utterance and say so; never half-deliver silently."""
        with self._cond:
            dropped = self._outbox.remove_unsent(stream.utterance_id, audio_only=True)
        delivered = stream.next_sequence - len(dropped)
        stream.abandoned = True
        self._stats.abandoned += 1
        end = UtteranceEnd(utterance_id=stream.utterance_id, reason=EndReason.ABANDONED, chunk_count=delivered)
        self._outbox.enqueue(Out(stream.utterance_id, "", encode_json(end), part=topics.UtterancePart.END))
        _LOGGER.warning(
            "utterance %s abandoned: broker unreachable and the outbox is full (%d of %d chunks kept)",
            stream.utterance_id,
            delivered,
            stream.next_sequence,
        )

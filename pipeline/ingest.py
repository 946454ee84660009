"""Cloud ingest: MQTT utterance streams -> streaming Vosk -> results back, clips stored.

paho's network thread only hands messages to the asyncio loop (`call_soon_threadsafe`);
one dispatcher task routes them to a task per utterance, which reassembles chunks,
feeds the recognizer *as audio arrives* (in a thread pool, so recognition never blocks
the loop), publishes partials, and on the end message (or a timeout) publishes the final
transcript and stores the clip with the consent tag from its start message.

Anything out of contract is rejected with a code, counted, logged without content, and
the service keeps serving.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from contract import topics
from contract.errors import ContractError
from contract.messages import (
    AudioChunk,
    EndReason,
    RecognitionResult,
    UtteranceEnd,
    UtteranceStart,
    decode_json,
    encode_json,
)
from contract.mqtt import build_client
from pipeline.reassembly import Reassembler
from pipeline.recognizer import StreamingRecognizer
from pipeline.settings import PipelineSettings
from pipeline.store import Clip, ClipStore

_LOGGER = logging.getLogger(__name__)

_FINISHED_REMEMBERED = 10_000  # late duplicates of these are recognised as such
_ORPHAN_CHUNKS_PER_STREAM = 400


@dataclass
class IngestStats:
    """Counters, for tests, health checks and the benchmark."""

    messages: int = 0
    rejected: collections.Counter[str] = field(default_factory=collections.Counter)
    duplicates: int = 0
    orphan_chunks_dropped: int = 0
    queue_full: int = 0
    stored: collections.Counter[str] = field(default_factory=collections.Counter)
    partials_published: int = 0
    finals_published: int = 0


@dataclass
class _Orphans:
    """Chunks that arrived before their start message (or whose start was rejected)."""

    first_seen: float
    chunks: list[AudioChunk] = field(default_factory=list)
    end: UtteranceEnd | None = None


class _Stream:
    """One utterance in progress."""

    def __init__(self, start: UtteranceStart, recognizer: StreamingRecognizer | None, queue_size: int) -> None:
        self.start = start
        self.recognizer = recognizer
        self.reassembler = Reassembler()
        self.audio = bytearray()
        self.end: UtteranceEnd | None = None
        self.queue: asyncio.Queue[AudioChunk | UtteranceEnd] = asyncio.Queue(maxsize=queue_size)
        self.task: asyncio.Task[None] | None = None


class IngestService:
    """Serves every device's utterance streams until `stop()`."""

    def __init__(
        self,
        settings: PipelineSettings,
        store: ClipStore,
        model: Any | None,
        *,
        client_factory: Callable[..., Any] = build_client,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._store = store
        self._model = model
        self._client_factory = client_factory
        self._clock = clock
        self.stats = IngestStats()
        self._streams: dict[UUID, _Stream] = {}
        self._finished: collections.OrderedDict[UUID, None] = collections.OrderedDict()
        self._orphans: dict[UUID, _Orphans] = {}
        self._households: dict[str, str] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inbox: asyncio.Queue[tuple[str, bytes]] | None = None
        self._client: Any = None
        self._connected = asyncio.Event()
        self._stopping = asyncio.Event()
        # Vosk work runs here; the store gets one thread of its own (SQLite connection).
        self._cpu = ThreadPoolExecutor(settings.recognition_threads, thread_name_prefix="recognize")
        self._io = ThreadPoolExecutor(1, thread_name_prefix="clip-store")

    # -- MQTT thread side: hand off only ------------------------------------------------

    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        if reason_code.is_failure:
            _LOGGER.warning("broker refused the pipeline: %s", reason_code)
            return
        client.subscribe(topics.utterance_filter(), qos=1)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._connected.set)
        _LOGGER.info("pipeline connected to the broker")

    def _on_disconnect(self, _client: Any, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        if not self._stopping.is_set():
            _LOGGER.warning("pipeline lost the broker (%s); paho reconnects", reason_code)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._connected.clear)

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        # Never raises, never blocks: the network thread must keep reading.
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._enqueue, message.topic, bytes(message.payload))

    def _enqueue(self, topic: str, payload: bytes) -> None:
        if self._inbox is None:
            return
        try:
            self._inbox.put_nowait((topic, payload))
        except asyncio.QueueFull:
            self.stats.queue_full += 1
            _LOGGER.warning("ingest queue full; message dropped (%d so far)", self.stats.queue_full)

    # -- lifecycle ----------------------------------------------------------------------

    async def run(self, ready: asyncio.Event | None = None) -> None:
        """Connect, serve until stopped, then finish open streams."""
        self._loop = asyncio.get_running_loop()
        self._inbox = asyncio.Queue(maxsize=self._settings.ingest.queue_messages)
        client = self._client_factory(self._settings.mqtt, self._settings.client_id)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.connect_async(self._settings.mqtt.host, self._settings.mqtt.port, self._settings.mqtt.keepalive_seconds)
        client.loop_start()
        self._client = client
        sweeper = asyncio.create_task(self._sweep_orphans(), name="orphan-sweeper")
        try:
            await self._connected.wait()
            if ready is not None:
                ready.set()
            while not self._stopping.is_set():
                getter = asyncio.ensure_future(self._inbox.get())
                stopper = asyncio.ensure_future(self._stopping.wait())
                done, _ = await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    stopper.cancel()
                    topic, payload = getter.result()
                    await self._dispatch(topic, payload)
                else:
                    getter.cancel()
        finally:
            sweeper.cancel()
            for stream in list(self._streams.values()):
                if stream.task is not None:
                    await asyncio.gather(stream.task, return_exceptions=True)
            client.loop_stop()
            client.disconnect()
            self._cpu.shutdown(wait=True)
            self._io.shutdown(wait=True)

    def stop(self) -> None:
        """Ask `run()` to return (thread-safe)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)

    @property
    def open_streams(self) -> int:
        """Utterances in progress."""
        return len(self._streams)

    # -- routing ------------------------------------------------------------------------

    def _reject(self, code: str, topic: str, detail: str = "") -> None:
        self.stats.rejected[code] += 1
        # The topic's levels are ids, not content; the payload is never logged.
        _LOGGER.warning("rejected message on %s: %s %s", topic[:200], code, detail)

    async def _household_of(self, device_id: str) -> str | None:
        if device_id not in self._households:
            loop = asyncio.get_running_loop()
            household = await loop.run_in_executor(self._io, self._store.device_household, device_id)
            if household is None:
                return None
            self._households[device_id] = household
        return self._households[device_id]

    async def _dispatch(self, topic: str, payload: bytes) -> None:
        self.stats.messages += 1
        try:
            if len(payload) > self._settings.ingest.max_payload_bytes:
                raise ContractError("payload_too_large", f"{len(payload)} bytes")
            parsed = topics.parse_utterance_topic(topic)
            household = await self._household_of(parsed.device_id)
            if household is None:
                raise ContractError("unknown_device", "device is not enrolled")
            if parsed.part is topics.UtterancePart.START:
                self._on_start(parsed, household, decode_json(UtteranceStart, payload))
            elif parsed.part is topics.UtterancePart.AUDIO:
                self._on_chunk(parsed.utterance_id, AudioChunk.decode(payload))
            else:
                end = decode_json(UtteranceEnd, payload)
                if end.utterance_id != parsed.utterance_id:
                    raise ContractError("identity_mismatch", "end message for another utterance")
                self._on_end(end)
        except ContractError as err:
            self._reject(err.code, topic, err.message)
        except Exception:
            # A bug must cost one message, not the service.
            self.stats.rejected["internal_error"] += 1
            _LOGGER.exception("failed to handle a message on %s", topic[:200])

    def _on_start(self, parsed: topics.UtteranceTopic, household: str, start: UtteranceStart) -> None:
        if start.device_id != parsed.device_id or start.utterance_id != parsed.utterance_id:
            raise ContractError("identity_mismatch", "start message ids differ from its topic")
        if start.household_id != household:
            raise ContractError("identity_mismatch", "device is not enrolled in that household")
        if start.utterance_id in self._streams or start.utterance_id in self._finished:
            self.stats.duplicates += 1
            return
        if len(self._streams) >= self._settings.ingest.max_streams:
            raise ContractError("too_many_streams", "stream limit reached")
        recognizer = StreamingRecognizer(self._model, list(self._settings.grammar)) if self._model else None
        stream = _Stream(start, recognizer, queue_size=2000)
        self._streams[start.utterance_id] = stream
        orphans = self._orphans.pop(start.utterance_id, None)
        if orphans is not None:
            for chunk in orphans.chunks:
                stream.queue.put_nowait(chunk)
            if orphans.end is not None:
                stream.queue.put_nowait(orphans.end)
        stream.task = asyncio.create_task(self._serve(stream), name=f"utterance-{start.utterance_id}")

    def _on_chunk(self, utterance_id: UUID, chunk: AudioChunk) -> None:
        stream = self._streams.get(utterance_id)
        if stream is not None:
            try:
                stream.queue.put_nowait(chunk)
            except asyncio.QueueFull as err:
                raise ContractError("stream_overrun", "stream sends faster than it is recognized") from err
        elif utterance_id in self._finished:
            self.stats.duplicates += 1
        else:
            orphans = self._orphans.setdefault(utterance_id, _Orphans(first_seen=self._clock()))
            if len(orphans.chunks) >= _ORPHAN_CHUNKS_PER_STREAM:
                raise ContractError("orphan_overrun", "too many chunks without a start message")
            orphans.chunks.append(chunk)

    def _on_end(self, end: UtteranceEnd) -> None:
        stream = self._streams.get(end.utterance_id)
        if stream is not None:
            stream.queue.put_nowait(end)
        elif end.utterance_id in self._finished:
            self.stats.duplicates += 1
        else:
            orphans = self._orphans.setdefault(end.utterance_id, _Orphans(first_seen=self._clock()))
            orphans.end = end

    async def _sweep_orphans(self) -> None:
        """Drop chunks whose start never came: without a consent tag they cannot be kept."""
        while True:
            await asyncio.sleep(1.0)
            cutoff = self._clock() - self._settings.ingest.stream_timeout_seconds
            for utterance_id in [u for u, o in self._orphans.items() if o.first_seen < cutoff]:
                dropped = self._orphans.pop(utterance_id)
                self.stats.orphan_chunks_dropped += len(dropped.chunks)
                _LOGGER.warning("dropped %d chunks of %s: no valid start message", len(dropped.chunks), utterance_id)

    # -- one utterance ------------------------------------------------------------------

    async def _serve(self, stream: _Stream) -> None:
        ingest = self._settings.ingest
        status = "complete"
        try:
            while True:
                waiting_for_gap = stream.end is not None
                timeout = ingest.gap_wait_seconds if waiting_for_gap else ingest.stream_timeout_seconds
                try:
                    item = await asyncio.wait_for(stream.queue.get(), timeout)
                except TimeoutError:
                    status = "incomplete" if stream.end is not None else "timed_out"
                    break
                if isinstance(item, UtteranceEnd):
                    stream.end = item
                else:
                    for pcm in stream.reassembler.add(item):
                        await self._feed(stream, pcm)
                complete = stream.end is not None and stream.reassembler.next_sequence >= stream.end.chunk_count
                if complete and not stream.reassembler.waiting:
                    break
            await self._finish(stream, status)
        except Exception:
            _LOGGER.exception("utterance %s failed", stream.start.utterance_id)
            self.stats.rejected["internal_error"] += 1
        finally:
            self._streams.pop(stream.start.utterance_id, None)
            self._finished[stream.start.utterance_id] = None
            while len(self._finished) > _FINISHED_REMEMBERED:
                self._finished.popitem(last=False)

    async def _feed(self, stream: _Stream, pcm: bytes) -> None:
        stream.audio += pcm
        if stream.recognizer is None:
            return
        loop = asyncio.get_running_loop()
        partial = await loop.run_in_executor(self._cpu, stream.recognizer.accept, pcm)
        if partial is not None:
            self._publish(stream, RecognitionResult(utterance_id=stream.start.utterance_id, final=False, text=partial))
            self.stats.partials_published += 1

    async def _finish(self, stream: _Stream, status: str) -> None:
        for pcm in stream.reassembler.skip_gaps(stream.end.chunk_count if stream.end else None):
            await self._feed(stream, pcm)
        missing = len(stream.reassembler.skipped)
        self.stats.duplicates += stream.reassembler.duplicates
        if stream.end is not None and stream.end.reason is EndReason.ABANDONED:
            status = "abandoned"
        elif status == "complete" and missing:
            status = "incomplete"
        start = stream.start
        muted = stream.end is not None and stream.end.reason is EndReason.MUTED
        if stream.recognizer is not None and not muted:
            loop = asyncio.get_running_loop()
            final = await loop.run_in_executor(self._cpu, stream.recognizer.finish, start.utterance_id)
        else:
            final = RecognitionResult(utterance_id=start.utterance_id, final=True, text="")
        if muted:
            # The user pressed mute mid-request: keep the record that it happened (with its
            # consent tag), not what was said before the press.
            stream.audio.clear()
        clip = Clip(
            utterance_id=start.utterance_id,
            device_id=start.device_id,
            household_id=start.household_id,
            capture_started_at=start.capture_started_at,
            stored_at=datetime.now(UTC),
            duration_seconds=0.0,  # the store measures the audio it writes
            transcript=final.text,
            end_reason=(stream.end.reason if stream.end else EndReason.CANCELLED).value,
            status=status,
            missing_chunks=missing,
            wake_word=start.wake_word,
            firmware_version=start.firmware_version,
            review_allowed=start.review_allowed,
            consent_version=start.consent_version,
        )
        await asyncio.get_running_loop().run_in_executor(self._io, self._store.save, clip, bytes(stream.audio))
        self.stats.stored[status] += 1
        self._publish(stream, final)
        self.stats.finals_published += 1
        _LOGGER.info(
            "stored utterance %s: %s, %d missing chunks, review_allowed=%s",
            start.utterance_id,
            status,
            missing,
            start.review_allowed,
        )

    def _publish(self, stream: _Stream, result: RecognitionResult) -> None:
        if self._client is not None:
            self._client.publish(topics.results(stream.start.device_id), encode_json(result), qos=1)

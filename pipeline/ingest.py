"""Cloud ingest: MQTT utterance streams -> streaming Vosk -> results back, clips stored.

paho's network thread only appends messages to a bounded batch and wakes the asyncio
loop once per batch. On the loop, every message is handled synchronously and in O(1):
chunks are reassembled straight into their stream's audio buffer, and a task per
utterance feeds the recognizer (in a thread pool) with whatever audio has arrived,
publishes partials, and on the end (or a limit) publishes the final transcript and
stores the clip with the consent tag its start claimed.

Several workers share the load (see the README's sequence diagram): each start reaches
one worker through the broker's shared subscription; that worker claims it
(`UtteranceClaimed`) and the device sends the rest to it alone. After the clip is saved
the worker sends a receipt (`UtteranceStored`); until then the device keeps the whole
utterance and sends it again, from its start, if the worker that claimed it goes away.
So a worker keeps nothing that matters in memory: one killed outright loses nothing a
device delivered, and a stream whose device has not been heard since this worker lost
the broker is let go at its deadline, not stored in part: while our presence was gone
its device sent it, whole, to another worker.

What a device says is checked in `pipeline.device_claims`; its time limits run on a
clock that stops while the pipeline is cut off from the broker, and a stream's silence
only counts once its device has been heard again since the last reconnect, so a broker
restart never turns a request into a timeout. Anything out of contract is rejected with
a code, counted, logged without content, and the service keeps serving.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from contract import topics
from contract.audio import seconds_to_bytes
from contract.errors import ContractError
from contract.messages import (
    FLAG_PREROLL,
    AudioChunk,
    EndReason,
    PipelineStatus,
    RecognitionResult,
    UtteranceCancelled,
    UtteranceClaimed,
    UtteranceEnd,
    UtteranceStart,
    UtteranceStored,
    decode_json,
    encode_json,
)
from contract.mqtt import build_client, connect_in_background
from pipeline.arbitration import Outcome, speech_level_db
from pipeline.device_claims import (
    ConsentTag,
    DeviceRateLimit,
    StreamLimits,
    StreamQuotas,
    check_enrolment,
    check_start_identity,
    same_tag_or_conflict,
)
from pipeline.reassembly import Reassembler
from pipeline.recognizer import StreamingRecognizer
from pipeline.settings import PipelineSettings
from pipeline.store import Clip, ClipStore, StartClaim

_LOGGER = logging.getLogger(__name__)

_FINISHED_REMEMBERED = 10_000  # recent utterances answered from memory; older ones from the store
_BATCH_PER_TURN = 500  # messages handled per loop turn before other tasks get a go
_PRESENCE_RENEW_SECONDS = 20.0  # the retained presence expires after three missed renewals
# A contested request asks the database this often whether its contest is decided: only
# while several speakers of one household stream the same words, for about a second.
_CONTEST_POLL_SECONDS = 0.05
_CONTEST_CHECK_SECONDS = 0.25  # while still streaming: has another speaker already won?
# Audio that is not kept: a press of mute, or a wake in which nobody spoke.
_NO_AUDIO_REASONS = {EndReason.MUTED, EndReason.NO_SPEECH}


@dataclass
class IngestStats:
    """Counters, for tests, health checks and the benchmark."""

    messages: int = 0
    rejected: collections.Counter[str] = field(default_factory=collections.Counter)
    duplicates: int = 0
    retained_ignored: int = 0
    rate_limited: int = 0
    orphan_chunks_dropped: int = 0
    queue_full: int = 0
    stored: collections.Counter[str] = field(default_factory=collections.Counter)
    partials_published: int = 0
    finals_published: int = 0
    arbitration_cancelled: int = 0
    claims: int = 0
    receipts: int = 0
    let_go: int = 0  # streams let go (broker lost, or stopping): their devices send them again
    unfollowed: int = 0  # claims the device never followed (it took another worker's): nothing to keep


class OnlineClock:
    """Monotonic seconds that stand still while the pipeline is cut off from the broker.

    A device cannot be heard while the broker is away, so no stream may time out then.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._offline_total = 0.0
        self._offline_since: float | None = clock()  # offline until the first connect

    def now(self) -> float:
        """Connected seconds so far."""
        t = self._clock()
        frozen = t - self._offline_since if self._offline_since is not None else 0.0
        return t - self._offline_total - frozen

    @property
    def online(self) -> bool:
        """Whether the pipeline is connected."""
        return self._offline_since is None

    def set_online(self, online: bool) -> None:
        """The broker connection came or went."""
        if online and self._offline_since is not None:
            self._offline_total += self._clock() - self._offline_since
            self._offline_since = None
        elif not online and self._offline_since is None:
            self._offline_since = self._clock()


@dataclass
class _Orphans:
    """Chunks that arrived before their start message (or whose start was rejected)."""

    device_id: str
    first_seen: float
    chunks: list[AudioChunk] = field(default_factory=list)
    end: UtteranceEnd | None = None


class _Stream:
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
        self.feeding = False  # recognition starts once the pre-roll is whole (see _feed)
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
        contest_store: ClipStore | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        # Contest decisions come right before a request's answer: on a connection and thread
        # of their own (when given one) they never queue behind another request's save.
        self._contests = contest_store or store
        self._model = model
        self._client_factory = client_factory
        self._clock = OnlineClock(clock)
        self._limits = StreamLimits(settings.ingest)
        self._quotas = StreamQuotas(settings.ingest)
        self._rate_limit = DeviceRateLimit(settings.ingest, time.monotonic)
        self._contest_rules = settings.ingest.contest_rules()
        self.stats = IngestStats()
        self._streams: dict[UUID, _Stream] = {}
        self._finished: collections.OrderedDict[UUID, ConsentTag] = collections.OrderedDict()
        self._orphans: dict[UUID, _Orphans] = {}
        self._orphan_chunks = 0
        self._epoch = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Any = None
        # The paho thread appends here and wakes the loop once per batch, not per message.
        self._batch: collections.deque[tuple[str, bytes]] = collections.deque()
        self._batch_lock = threading.Lock()
        self._batch_scheduled = False
        self._ready: asyncio.Event | None = None
        self._subscribed = False  # set on paho's thread once the broker confirmed the subscription
        self._stopping = asyncio.Event()
        # Vosk work runs here; the store gets one thread of its own (SQLite connection).
        self._cpu = ThreadPoolExecutor(settings.recognition_threads, thread_name_prefix="recognize")
        self._io = ThreadPoolExecutor(1, thread_name_prefix="clip-store")
        self._contest_io = self._io if contest_store is None else ThreadPoolExecutor(1, thread_name_prefix="contests")

    # -- MQTT thread side: hand off only ------------------------------------------------

    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        from paho.mqtt.subscribeoptions import SubscribeOptions

        if reason_code.is_failure:
            _LOGGER.warning("broker refused the pipeline: %s", reason_code)
            return
        # Retained utterance messages are never served: not the ones stored on the broker
        # (a fresh pipeline would replay them at every start), nor live ones (flagged).
        options = SubscribeOptions(qos=1, retainAsPublished=True, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND)
        self._subscribed = False
        # Starts are shared among the workers (each goes to one of them); the rest of an
        # utterance is addressed by the device to the worker that claimed it.
        starts = topics.shared(self._settings.worker_group, topics.utterance_start_filter())
        client.subscribe([(starts, options), (topics.worker_utterance_filter(self._settings.client_id), options)])
        self._call_on_loop(self._set_connected, True)
        _LOGGER.info("pipeline connected to the broker at %s", self._settings.mqtt.address)

    def _on_subscribe(self, _client: Any, _userdata: Any, _mid: Any, reason_codes: Any, _props: Any) -> None:
        if any(code.is_failure for code in reason_codes):
            _LOGGER.error("the broker refused the pipeline's subscription: %s", reason_codes)
            return
        # Only now is anyone listening (a restarted broker forgot the subscription): tell
        # devices, which hold their outbox until a worker says so.
        self._subscribed = True
        self._announce_presence()
        self._call_on_loop(self._set_ready)

    def _announce_presence(self) -> None:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        # It expires unless renewed: a worker that died with its broker (no last will sent)
        # must not be believed for ever from a persisted retained message.
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.MessageExpiryInterval = int(3 * _PRESENCE_RENEW_SECONDS)
        online = encode_json(PipelineStatus(worker_id=self._settings.client_id, online=True))
        self._client.publish(
            topics.pipeline_status(self._settings.client_id), online, qos=1, retain=True, properties=properties
        )

    async def _renew_presence(self) -> None:
        while True:
            await asyncio.sleep(_PRESENCE_RENEW_SECONDS)
            if self._subscribed and self._clock.online:
                self._announce_presence()

    def _on_disconnect(self, _client: Any, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        if not self._stopping.is_set():
            _LOGGER.warning("pipeline lost the broker (%s); reconnecting with backoff", reason_code)
        self._call_on_loop(self._set_connected, False)

    def _call_on_loop(self, callback: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(callback, *args)

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        # Never raises, never blocks: the network thread must keep reading.
        if message.retain:
            self.stats.retained_ignored += 1
            return
        if len(message.payload) > self._settings.ingest.max_payload_bytes:
            self.stats.rejected["payload_too_large"] += 1  # never held in the batch
            return
        levels = message.topic.split("/", 4)  # earmark/v1/devices/{device}/...
        if len(levels) > 3 and not self._rate_limit.allow(levels[3]):
            self.stats.rate_limited += 1
            if _worth_a_log_line(self.stats.rate_limited):
                _LOGGER.warning("a device is flooding; %d messages dropped so far", self.stats.rate_limited)
            return
        with self._batch_lock:
            if len(self._batch) >= self._settings.ingest.queue_messages:
                self.stats.queue_full += 1
                if _worth_a_log_line(self.stats.queue_full):
                    _LOGGER.warning("ingest queue full; messages dropped (%d so far)", self.stats.queue_full)
                return
            self._batch.append((message.topic, message.payload))
            if self._batch_scheduled:
                return
            self._batch_scheduled = True
        self._call_on_loop(self._drain_batch)

    # -- lifecycle ----------------------------------------------------------------------

    async def run(self, ready: asyncio.Event | None = None) -> None:
        """Connect, serve until stopped (whatever the connection state), then finish open streams."""
        self._loop = asyncio.get_running_loop()
        self._ready = ready
        client = self._client_factory(self._settings.mqtt, self._settings.client_id)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        # If this worker dies, its presence is cleared (an empty retained message).
        client.will_set(topics.pipeline_status(self._settings.client_id), b"", qos=1, retain=True)
        self._client = client
        connect_in_background(client, self._settings.mqtt, "the pipeline")
        chores = [
            asyncio.create_task(self._sweep_orphans(), name="orphan-sweeper"),
            asyncio.create_task(self._tidy_ledger(), name="ledger-pruner"),
            asyncio.create_task(self._renew_presence(), name="presence"),
        ]
        try:
            await self._stopping.wait()
        finally:
            for chore in chores:
                chore.cancel()
            # Say first that nobody listens here any more, so devices hold what they would
            # send; _drain_batch starts nothing new once stopping; finish what is open (its
            # finals still go out); then let go of the broker.
            self._subscribed = False
            gone = client.publish(topics.pipeline_status(self._settings.client_id), b"", qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                await asyncio.get_running_loop().run_in_executor(None, gone.wait_for_publish, 2.0)
            for stream in list(self._streams.values()):
                # Whole ones are finished here; a device sends the others again, whole, to
                # another worker (it saw our presence go), so a part of one is not kept.
                stream.let_go = stream.end is None
                stream.wake.set()
            tasks = [s.task for s in self._streams.values() if s.task is not None]
            await asyncio.gather(*tasks, return_exceptions=True)
            client.loop_stop()
            client.disconnect()
            self._cpu.shutdown(wait=True)
            self._io.shutdown(wait=True)
            self._contest_io.shutdown(wait=True)

    def stop(self) -> None:
        """Ask `run()` to return (thread-safe)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stopping.set)

    @property
    def worker_id(self) -> str:
        """This worker's name: its client id, presence topic and the address of its audio."""
        return self._settings.client_id

    @property
    def open_streams(self) -> int:
        """Utterances in progress."""
        return len(self._streams)

    def _set_ready(self) -> None:
        # Ready means subscribed, not merely connected: a message published between the
        # two would reach no one (a test sending right after start saw exactly that).
        if self._ready is not None:
            self._ready.set()

    def _set_connected(self, connected: bool) -> None:
        self._clock.set_online(connected)
        if connected:
            self._epoch += 1
        for stream in self._streams.values():
            stream.wake.set()  # re-plan every wait on the new clock

    # -- routing (on the loop, synchronous, O(1) per message) ---------------------------

    def _drain_batch(self) -> None:
        if self._stopping.is_set():
            return  # finishing what is open; nothing new is started
        with self._batch_lock:
            items = [self._batch.popleft() for _ in range(min(len(self._batch), _BATCH_PER_TURN))]
            more = bool(self._batch)
            self._batch_scheduled = more
        for topic, payload in items:
            self._dispatch(topic, payload)
        if more:
            asyncio.get_running_loop().call_soon(self._drain_batch)

    def _reject(self, code: str, topic: str, detail: str = "") -> None:
        self.stats.rejected[code] += 1
        count = self.stats.rejected[code]
        # The topic's levels are ids, not content; payloads are never logged.
        if _worth_a_log_line(count):
            _LOGGER.warning("rejected message on %s: %s %s (%d so far)", topic[:200], code, detail, count)

    def _dispatch(self, topic: str, payload: bytes) -> None:
        self.stats.messages += 1
        try:
            parsed = topics.parse_utterance_topic(topic)
            if parsed.worker_id not in (None, self._settings.client_id):
                raise ContractError("wrong_worker", "audio or end addressed to another worker")
            if parsed.part is topics.UtterancePart.START:
                self._on_start(parsed, decode_json(UtteranceStart, payload))
            elif parsed.part is topics.UtterancePart.AUDIO:
                self._on_chunk(parsed, AudioChunk.decode(payload))
            else:
                end = decode_json(UtteranceEnd, payload)
                if end.utterance_id != parsed.utterance_id:
                    raise ContractError("identity_mismatch", "end message for another utterance")
                self._limits.check_end(end)
                self._on_end(parsed, end)
        except ContractError as err:
            self._reject(err.code, topic, err.message)
        except Exception:
            # A bug must cost one message, not the service.
            self.stats.rejected["internal_error"] += 1
            _LOGGER.exception("failed to handle a message on %s", topic[:200])

    def _on_start(self, parsed: topics.UtteranceTopic, start: UtteranceStart) -> None:
        check_start_identity(parsed, start)
        utterance_id = start.utterance_id
        again = ConsentTag.of(start)
        open_stream = self._streams.get(utterance_id)
        if open_stream is not None:
            try:
                same_tag_or_conflict(open_stream.tag, again)
            except ContractError:
                open_stream.review_blocked = "conflicting_start"
                # Its clip may be built or being saved already: the store's one thread runs
                # this after that save, and it only ever narrows.
                self._block_review(utterance_id)
                raise
            self.stats.duplicates += 1
            self._claim(start)  # our claim may not have reached the device: it sends the start again
            return
        if utterance_id in self._finished:
            self._on_finished_start(self._finished[utterance_id], again, utterance_id)
            self._publish(start.device_id, UtteranceStored(utterance_id=utterance_id))
            return
        self._quotas.admit_device(start.device_id)
        stream = _Stream(start, self._limits, self._clock.now(), self._epoch)
        self._streams[utterance_id] = stream
        # The task owns the stream (and releases its quota) from here on, whatever follows.
        stream.task = asyncio.create_task(self._serve(stream), name=f"utterance-{utterance_id}")
        self._claim(start)
        orphans = self._orphans.pop(utterance_id, None)
        if orphans is None:
            return
        self._orphan_chunks -= len(orphans.chunks)
        if orphans.device_id != start.device_id:
            return
        for chunk in orphans.chunks:
            try:
                self._add_chunk(stream, chunk)
            except ContractError as err:
                self._reject(err.code, topics.utterance(start.device_id, utterance_id, topics.UtterancePart.AUDIO))
        if orphans.end is not None:
            self._set_end(stream, orphans.end)

    def _claim(self, start: UtteranceStart) -> None:
        """Tell the device this worker serves the utterance: its audio and end come here."""
        self.stats.claims += 1
        self._publish(
            start.device_id, UtteranceClaimed(utterance_id=start.utterance_id, worker_id=self._settings.client_id)
        )

    def _block_review(self, utterance_id: UUID) -> None:
        # Recorded in the database, so the worker that stores it (or stored it) blocks it too.
        future = asyncio.get_running_loop().run_in_executor(self._io, self._store.note_conflict, utterance_id)
        future.add_done_callback(_log_failure)

    def _on_finished_start(self, stored: ConsentTag, again: ConsentTag, utterance_id: UUID) -> None:
        try:
            same_tag_or_conflict(stored, again)
        except ContractError:
            self._block_review(utterance_id)  # stored already: the cloud may still narrow it, never widen it
            raise
        self.stats.duplicates += 1

    def _open_stream(self, parsed: topics.UtteranceTopic) -> _Stream | None:
        """The open stream a chunk or end belongs to (its device now heard), or None."""
        stream = self._streams.get(parsed.utterance_id)
        if stream is not None:
            if stream.start.device_id != parsed.device_id:
                raise ContractError("identity_mismatch", "message from another device than the stream's")
            stream.heard_at = self._clock.now()
            stream.heard_epoch = self._epoch
            stream.followed = True
        return stream

    def _on_chunk(self, parsed: topics.UtteranceTopic, chunk: AudioChunk) -> None:
        self._limits.check_sequence(chunk.sequence)
        stream = self._open_stream(parsed)
        if stream is not None:
            self._add_chunk(stream, chunk)
        elif parsed.utterance_id in self._finished:
            self.stats.duplicates += 1
        else:
            if chunk.sequence >= self._limits.window_chunks:
                raise ContractError("sequence_out_of_window", "chunk far ahead of a stream that has not started")
            orphans = self._orphan_entry(parsed)
            orphans.chunks.append(chunk)
            self._orphan_chunks += 1

    def _on_end(self, parsed: topics.UtteranceTopic, end: UtteranceEnd) -> None:
        stream = self._open_stream(parsed)  # the end's own id was checked against its topic
        if stream is not None:
            self._set_end(stream, end)
        elif end.utterance_id in self._finished:
            self.stats.duplicates += 1
        else:
            self._orphan_entry(parsed).end = end

    def _orphan_entry(self, parsed: topics.UtteranceTopic) -> _Orphans:
        orphans = self._orphans.get(parsed.utterance_id)
        if orphans is None:
            if len(self._orphans) >= self._settings.ingest.max_orphan_chunks:
                raise ContractError("orphan_overrun", "too many streams without a start message")
            orphans = _Orphans(parsed.device_id, self._clock.now())
            self._orphans[parsed.utterance_id] = orphans
        if orphans.device_id != parsed.device_id:
            raise ContractError("identity_mismatch", "message from another device than the stream's")
        if self._orphan_chunks >= self._settings.ingest.max_orphan_chunks:
            raise ContractError("orphan_overrun", "too many chunks without a start message")
        return orphans

    def _add_chunk(self, stream: _Stream, chunk: AudioChunk) -> None:
        stream.followed = True
        if stream.capped:
            self.stats.duplicates += 1  # past the cloud's length limit: not kept
            return
        if not chunk.flags & FLAG_PREROLL:
            if stream.first_live_sequence is None or chunk.sequence < stream.first_live_sequence:
                stream.first_live_sequence = chunk.sequence
        elif len(stream.preroll_chunks) < self._limits.window_chunks:
            stream.preroll_chunks[chunk.sequence] = len(chunk.pcm)
        for pcm in stream.reassembler.add(chunk):
            room = self._limits.max_audio_bytes - len(stream.audio)
            stream.audio += pcm[:room]
            if len(pcm) >= room:
                stream.capped = True
                break
        stream.wake.set()

    def _set_end(self, stream: _Stream, end: UtteranceEnd) -> None:
        stream.followed = True
        if stream.end is None:
            stream.end = end
            stream.end_heard_at = self._clock.now()
        stream.wake.set()

    async def _sweep_orphans(self) -> None:
        """Drop chunks whose start never came: without a consent tag they cannot be kept."""
        while True:
            await asyncio.sleep(1.0)
            cutoff = self._clock.now() - self._settings.ingest.stream_timeout_seconds
            expired = [u for u, o in self._orphans.items() if o.first_seen < cutoff]
            chunks = 0
            for utterance_id in expired:
                dropped = self._orphans.pop(utterance_id)
                chunks += len(dropped.chunks)
            if expired:
                self._orphan_chunks -= chunks
                self.stats.orphan_chunks_dropped += chunks
                _LOGGER.warning("dropped %d chunks of %d streams: no valid start message", chunks, len(expired))

    async def _tidy_ledger(self) -> None:
        """Forget old utterance-ledger entries now and then (any worker may; it is idempotent)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._settings.ingest.reconcile_interval_seconds)
            try:
                await loop.run_in_executor(self._io, self._store.prune_ledger)
            except Exception:
                _LOGGER.exception("pruning the utterance ledger failed; retrying next round")

    # -- one utterance ------------------------------------------------------------------

    async def _serve(self, stream: _Stream) -> None:
        utterance_id = stream.start.utterance_id
        try:
            if await self._admit(stream):
                status = await self._receive(stream)
                if status == "let_go":
                    self.stats.let_go += 1
                elif not stream.followed:
                    # The device sent nothing after its start: it followed another worker's
                    # claim (or died before saying a word). No speech reached us to keep.
                    self.stats.unfollowed += 1
                elif not stream.cancelled:
                    await self._finish(stream, status)
            stream.settled = stream.settled or stream.cancelled
        except ContractError as err:
            self._reject(err.code, topics.utterance(stream.start.device_id, utterance_id, topics.UtterancePart.START))
        except Exception:
            _LOGGER.exception("utterance %s failed", utterance_id)
            self.stats.rejected["internal_error"] += 1
        finally:
            # household_id is set only once the household quota was charged.
            self._quotas.release(stream.start.device_id, stream.household_id)
            self._streams.pop(utterance_id, None)
            # Remembered as done only if it was: a start of one we let go, nobody followed, or
            # failed to store, sent again, must be served (answering "stored" would lose it).
            if stream.settled:
                self._finished[utterance_id] = stream.tag
            while len(self._finished) > _FINISHED_REMEMBERED:
                self._finished.popitem(last=False)

    async def _admit(self, stream: _Stream) -> bool:
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
        known = await loop.run_in_executor(self._io, self._store.admit_start, claim, self._contest_rules)
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
        if known.forgotten:
            self.stats.duplicates += 1  # deleted by its household already: never served again
            stream.settled = True
            self._publish(start.device_id, UtteranceStored(utterance_id=start.utterance_id))
            return False
        if known.stored:
            self.stats.duplicates += 1  # redelivered after a restart: what is stored stays as it is
            stream.settled = True
            self._publish(start.device_id, UtteranceStored(utterance_id=start.utterance_id))
            return False
        self._quotas.admit_household(start.household_id)
        stream.household_id = start.household_id
        stream.keep_audio = known.keep_audio
        stream.contest_id, stream.outcome = known.contest_id, known.outcome
        stream.admitted_at = time.monotonic()
        if stream.outcome is Outcome.CANCELLED:
            self._lose(stream)  # its contest was decided: another speaker is answering
        if self._model is not None:
            # Creating a recognizer costs up to ~60 ms of CPU: never on the loop.
            grammar = list(self._settings.grammar)
            stream.recognizer = await loop.run_in_executor(self._cpu, StreamingRecognizer, self._model, grammar)
        return True

    # -- one speaker answers (see pipeline.arbitration; the contest is in the database) ---

    async def _contest_decided(self, stream: _Stream) -> None:
        """While a contested stream runs: learn whether another speaker already won it, and
        whether it has a rival at all (a speaker alone once the window closed shows partials)."""
        if stream.contest_id is None or stream.outcome is not None:
            return
        loop = asyncio.get_running_loop()
        utterance_id = stream.start.utterance_id
        outcome = await loop.run_in_executor(self._contest_io, self._contests.contest_outcome, utterance_id)
        if outcome is not None:
            stream.outcome = outcome
            if outcome is Outcome.CANCELLED and not stream.cancelled:
                self._lose(stream)
        elif time.monotonic() - stream.admitted_at >= self._contest_rules.window_seconds:
            entrants = await loop.run_in_executor(self._contest_io, self._contests.contest_entrants, utterance_id)
            stream.alone = entrants == 1
            self._show_partial(stream)

    async def _settle_contest(self, stream: _Stream, end_reason: EndReason, final: RecognitionResult) -> None:
        """Report how this entrant ended, then wait (bounded by the contest rules) for the decision."""
        if stream.contest_id is None or stream.outcome is not None:
            return
        live = stream.audio[sum(stream.preroll_chunks.values()) :]
        loop = asyncio.get_running_loop()
        outcome = await loop.run_in_executor(
            self._contest_io,
            functools.partial(
                self._contests.settle_contest,
                stream.start.utterance_id,
                self._contest_rules,
                spoke=end_reason in (EndReason.SILENCE, EndReason.MAX_LENGTH) and len(live) > 0,
                recognized=bool(final.text.strip()),
                level_db=speech_level_db(bytes(live)),
            ),
        )
        while outcome is None:
            await asyncio.sleep(_CONTEST_POLL_SECONDS)
            outcome = await loop.run_in_executor(
                self._contest_io, self._contests.contest_outcome, stream.start.utterance_id, self._contest_rules
            )
        stream.outcome = outcome

    def _lose(self, stream: _Stream) -> None:
        stream.cancelled = True
        stream.wake.set()
        self.stats.arbitration_cancelled += 1
        self._publish(stream.start.device_id, UtteranceCancelled(utterance_id=stream.start.utterance_id))
        _LOGGER.info("utterance %s: another speaker of the household answers", stream.start.utterance_id)

    def _deadline(self, stream: _Stream) -> tuple[float, str]:
        """The next moment (connected seconds) at which the stream must end, and its status then."""
        ingest = self._settings.ingest
        deadlines = [(stream.opened_at + ingest.max_utterance_seconds + ingest.end_grace_seconds, "timed_out")]
        if stream.end is not None:
            deadlines.append((stream.end_heard_at + ingest.gap_wait_seconds, "incomplete"))
        elif stream.heard_epoch == self._epoch:
            # Silence only counts once the device has been heard since the last reconnect:
            # it may still be reconnecting and about to resend what the broker lost.
            deadlines.append((stream.heard_at + ingest.stream_timeout_seconds, "timed_out"))
        return min(deadlines)

    async def _receive(self, stream: _Stream) -> str:
        """Feed audio as it arrives until the stream is whole, capped, or out of time."""
        while True:
            stream.wake.clear()
            if stream.let_go:
                return "let_go"
            if stream.cancelled:
                return "cancelled"
            await self._feed(stream)
            if stream.capped:
                return "complete"
            end = stream.end
            if (
                end is not None
                and stream.reassembler.next_sequence >= end.chunk_count
                and not stream.reassembler.waiting
            ):
                return "complete"
            if self._stopping.is_set():
                return "incomplete" if end is not None else "timed_out"
            deadline, status = self._deadline(stream)
            now = self._clock.now()
            if self._clock.online and now >= deadline:
                return status if stream.heard_epoch == self._epoch else "let_go"
            timeout = max(deadline - now, 0.01) if self._clock.online else None
            # Alone once the window closed: nobody can join but to lose, so no more asking.
            if stream.contest_id is not None and stream.outcome is None and not stream.alone:
                await self._contest_decided(stream)
                if stream.cancelled:
                    return "cancelled"
                timeout = _CONTEST_CHECK_SECONDS if timeout is None else min(timeout, _CONTEST_CHECK_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stream.wake.wait(), timeout)

    async def _feed(self, stream: _Stream, *, last: bool = False) -> None:
        if stream.recognizer is None:
            return
        if not stream.feeding:
            # The wake word lies in the pre-roll, and a recognizer hears it as words of the
            # request: only the pre-roll's last moments are recognized (all of it is stored).
            # Known once every chunk before the first live one is in (or at the very end).
            live = stream.first_live_sequence
            if not last and (live is None or stream.reassembler.next_sequence < live):
                return
            preroll = sum(size for seq, size in stream.preroll_chunks.items() if live is None or seq < live)
            keep = seconds_to_bytes(self._settings.ingest.recognized_preroll_seconds)
            stream.fed_bytes = min(max(preroll - keep, 0), len(stream.audio))
            stream.feeding = True
        if stream.fed_bytes >= len(stream.audio):
            return
        pcm = bytes(stream.audio[stream.fed_bytes :])
        stream.fed_bytes += len(pcm)
        loop = asyncio.get_running_loop()
        partial = await loop.run_in_executor(self._cpu, stream.recognizer.accept, pcm)
        if partial is not None:
            stream.held_partial = partial
            self._show_partial(stream)

    def _show_partial(self, stream: _Stream) -> None:
        """The latest partial, unless the speaker may yet lose its household's contest (then
        it waits: shown once the speaker is known to be alone or to answer)."""
        shown = stream.contest_id is None or stream.alone or stream.outcome is Outcome.ANSWERS
        if stream.held_partial is None or not shown:
            return
        self._publish(
            stream.start.device_id,
            RecognitionResult(utterance_id=stream.start.utterance_id, final=False, text=stream.held_partial),
        )
        stream.held_partial = None
        self.stats.partials_published += 1

    async def _finish(self, stream: _Stream, status: str) -> None:
        if not stream.capped:
            for pcm in stream.reassembler.skip_gaps(stream.end.chunk_count if stream.end else None):
                stream.audio += pcm[: self._limits.max_audio_bytes - len(stream.audio)]
        await self._feed(stream, last=True)
        missing = stream.reassembler.missing
        self.stats.duplicates += stream.reassembler.duplicates
        end_reason = stream.end.reason if stream.end else EndReason.CANCELLED
        if stream.capped:
            end_reason = EndReason.MAX_LENGTH
        elif end_reason is EndReason.ABANDONED:
            status = "abandoned"
        elif status == "complete" and missing:
            status = "incomplete"
        start = stream.start
        muted = end_reason is EndReason.MUTED
        if stream.recognizer is not None and not muted:
            loop = asyncio.get_running_loop()
            final = await loop.run_in_executor(self._cpu, stream.recognizer.finish, start.utterance_id)
        else:
            final = RecognitionResult(
                utterance_id=start.utterance_id,
                final=True,
                text="",
                not_recognized="muted" if muted else "no_recognizer",
            )
        await self._settle_contest(stream, end_reason, final)
        self._show_partial(stream)
        if stream.outcome is Outcome.CANCELLED:
            self._lose(stream)  # another speaker of the household answers: nothing of this one is kept
            stream.settled = True
            return
        # Muted: the user cut the request off. No speech: nothing was said. Don't keep:
        # the household asked for nothing to be kept. A record of the request (with its
        # tag) stays; the audio is never written, and with it goes the transcript.
        keep_audio = stream.keep_audio and end_reason not in _NO_AUDIO_REASONS
        clip = Clip(
            utterance_id=start.utterance_id,
            device_id=start.device_id,
            household_id=start.household_id,
            capture_started_at=start.capture_started_at,
            received_at=stream.received_at or datetime.now(UTC),  # the ledger's wins at the save
            stored_at=datetime.now(UTC),
            duration_seconds=0.0,  # the store measures the audio it writes
            transcript=final.text if keep_audio else "",
            end_reason=end_reason.value,
            status=status,
            missing_chunks=missing,
            wake_word=start.wake_word,
            firmware_version=start.firmware_version,
            review_allowed=start.review_allowed,
            consent_version=start.consent_version,
            review_blocked=stream.review_blocked,
        )
        # The answer first: the user waits for it, while the save's fsyncs need not hold it up.
        self._publish(start.device_id, final)
        self.stats.finals_published += 1
        audio = bytes(stream.audio) if keep_audio else None
        saved = await asyncio.get_running_loop().run_in_executor(self._io, self._store.save, clip, audio)
        # Only now may the device forget the utterance.
        stream.settled = True
        self._publish(start.device_id, UtteranceStored(utterance_id=start.utterance_id))
        self.stats.receipts += 1
        if saved:
            self.stats.stored[status] += 1
        else:
            self.stats.duplicates += 1  # another worker stored it first
            if stream.review_blocked is not None:
                self._block_review(start.utterance_id)
        _LOGGER.info(
            "stored utterance %s: %s (%s), %d missing chunks, audio kept=%s",
            start.utterance_id,
            status,
            end_reason.value,
            missing,
            keep_audio,
        )

    def _publish(
        self,
        device_id: str,
        message: RecognitionResult | UtteranceCancelled | UtteranceClaimed | UtteranceStored,
    ) -> None:
        """To a device, on its results topic."""
        if self._client is not None:
            self._client.publish(topics.results(device_id), encode_json(message), qos=1)


def _log_failure(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        _LOGGER.error("could not narrow review of a stored clip", exc_info=future.exception())


def _worth_a_log_line(count: int) -> bool:
    """A flood must not become a flood of log lines: the first ten of a kind, then every power of two."""
    return count <= 10 or count & (count - 1) == 0

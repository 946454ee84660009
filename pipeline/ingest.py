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

This module is the worker's MQTT side: paho's callbacks, the hand-off to the loop, the
worker's presence, and routing each message (a start here; chunks and ends in
`pipeline.streams`). One stream is served by `pipeline.serving`, fed to Vosk by
`pipeline.feeding`, entered in its household's contest by `pipeline.contest_watch` and
stored by `pipeline.storing`; what they share is one `pipeline.worker_parts.WorkerParts`.

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
import logging
import threading
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

from contract import topics
from contract.errors import ContractError
from contract.messages import (
    AudioChunk,
    PipelineStatus,
    UtteranceClaimed,
    UtteranceEnd,
    UtteranceStart,
    UtteranceStored,
    decode_json,
    encode_json,
)
from contract.mqtt import build_client, connect_in_background
from pipeline.device_claims import ConsentTag, DeviceRateLimit, check_start_identity, same_tag_or_conflict
from pipeline.serving import serve
from pipeline.settings import PipelineSettings
from pipeline.store import ClipStore
from pipeline.storing import block_review
from pipeline.streams import StreamBook
from pipeline.worker_parts import IngestStats, OnlineClock, ToDevice, WorkerParts, worth_a_log_line

_LOGGER = logging.getLogger(__name__)

_BATCH_PER_TURN = 500  # messages handled per loop turn before other tasks get a go
_PRESENCE_RENEW_SECONDS = 20.0  # the retained presence expires after three missed renewals


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
        self._client_factory = client_factory
        self._parts = WorkerParts(
            settings, store, contest_store or store, model, OnlineClock(clock), publish=self._publish
        )
        self._book = StreamBook(self._parts)
        self._rate_limit = DeviceRateLimit(settings.ingest, time.monotonic)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Any = None
        # The paho thread appends here and wakes the loop once per batch, not per message.
        self._batch: collections.deque[tuple[str, bytes]] = collections.deque()
        self._batch_lock = threading.Lock()
        self._batch_scheduled = False
        self._ready: asyncio.Event | None = None
        self._subscribed = False  # set on paho's thread once the broker confirmed the subscription

    @property
    def stats(self) -> IngestStats:
        """This worker's counters."""
        return self._parts.stats

    @property
    def worker_id(self) -> str:
        """This worker's name: its client id, presence topic and the address of its audio."""
        return self._settings.client_id

    @property
    def open_streams(self) -> int:
        """Utterances in progress."""
        return len(self._book.open)

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

    def _on_disconnect(self, _client: Any, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        if not self._parts.stopping.is_set():
            _LOGGER.warning("pipeline lost the broker (%s); reconnecting with backoff", reason_code)
        self._call_on_loop(self._set_connected, False)

    def _call_on_loop(self, callback: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(callback, *args)

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        # Never raises, never blocks: the network thread must keep reading.
        stats = self._parts.stats
        if message.retain:
            stats.retained_ignored += 1
            return
        if len(message.payload) > self._settings.ingest.max_payload_bytes:
            stats.rejected["payload_too_large"] += 1  # never held in the batch
            return
        levels = message.topic.split("/", 4)  # earmark/v1/devices/{device}/...
        if len(levels) > 3 and not self._rate_limit.allow(levels[3]):
            stats.rate_limited += 1
            if worth_a_log_line(stats.rate_limited):
                _LOGGER.warning("a device is flooding; %d messages dropped so far", stats.rate_limited)
            return
        with self._batch_lock:
            if len(self._batch) >= self._settings.ingest.queue_messages:
                stats.queue_full += 1
                if worth_a_log_line(stats.queue_full):
                    _LOGGER.warning("ingest queue full; messages dropped (%d so far)", stats.queue_full)
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
            await self._parts.stopping.wait()
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
            for stream in list(self._book.open.values()):
                # Whole ones are finished here; a device sends the others again, whole, to
                # another worker (it saw our presence go), so a part of one is not kept.
                stream.let_go = stream.end is None
                stream.wake.set()
            tasks = [s.task for s in self._book.open.values() if s.task is not None]
            await asyncio.gather(*tasks, return_exceptions=True)
            client.loop_stop()
            client.disconnect()
            self._parts.shut_down_threads()

    def stop(self) -> None:
        """Ask `run()` to return (thread-safe)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._parts.stopping.set)

    def _set_ready(self) -> None:
        # Ready means subscribed, not merely connected: a message published between the
        # two would reach no one (a test sending right after start saw exactly that).
        if self._ready is not None:
            self._ready.set()

    def _set_connected(self, connected: bool) -> None:
        self._parts.clock.set_online(connected)
        for stream in self._book.open.values():
            stream.wake.set()  # re-plan every wait on the new clock

    async def _renew_presence(self) -> None:
        while True:
            await asyncio.sleep(_PRESENCE_RENEW_SECONDS)
            if self._subscribed and self._parts.clock.online:
                self._announce_presence()

    async def _sweep_orphans(self) -> None:
        """Drop chunks whose start never came: without a consent tag they cannot be kept."""
        while True:
            await asyncio.sleep(1.0)
            chunks, streams = self._book.sweep_orphans()
            if streams:
                self._parts.stats.orphan_chunks_dropped += chunks
                _LOGGER.warning("dropped %d chunks of %d streams: no valid start message", chunks, streams)

    async def _tidy_ledger(self) -> None:
        """Forget old utterance-ledger entries now and then (any worker may; it is idempotent)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._settings.ingest.reconcile_interval_seconds)
            try:
                await loop.run_in_executor(self._parts.io, self._parts.store.prune_ledger)
            except Exception:
                _LOGGER.exception("pruning the utterance ledger failed; retrying next round")

    # -- routing (on the loop, synchronous, O(1) per message) ---------------------------

    def _drain_batch(self) -> None:
        if self._parts.stopping.is_set():
            return  # finishing what is open; nothing new is started
        with self._batch_lock:
            items = [self._batch.popleft() for _ in range(min(len(self._batch), _BATCH_PER_TURN))]
            more = bool(self._batch)
            self._batch_scheduled = more
        for topic, payload in items:
            self._dispatch(topic, payload)
        if more:
            asyncio.get_running_loop().call_soon(self._drain_batch)

    def _dispatch(self, topic: str, payload: bytes) -> None:
        self._parts.stats.messages += 1
        try:
            parsed = topics.parse_utterance_topic(topic)
            if parsed.worker_id not in (None, self._settings.client_id):
                raise ContractError("wrong_worker", "audio or end addressed to another worker")
            if parsed.part is topics.UtterancePart.START:
                self._on_start(parsed, decode_json(UtteranceStart, payload))
            elif parsed.part is topics.UtterancePart.AUDIO:
                self._book.on_chunk(parsed, AudioChunk.decode(payload))
            else:
                end = decode_json(UtteranceEnd, payload)
                if end.utterance_id != parsed.utterance_id:
                    raise ContractError("identity_mismatch", "end message for another utterance")
                self._parts.limits.check_end(end)
                self._book.on_end(parsed, end)
        except ContractError as err:
            self._parts.reject(err.code, topic, err.message)
        except Exception:
            # A bug must cost one message, not the service.
            self._parts.stats.rejected["internal_error"] += 1
            _LOGGER.exception("failed to handle a message on %s", topic[:200])

    def _on_start(self, parsed: topics.UtteranceTopic, start: UtteranceStart) -> None:
        check_start_identity(parsed, start)
        utterance_id = start.utterance_id
        again = ConsentTag.of(start)
        open_stream = self._book.open.get(utterance_id)
        if open_stream is not None:
            try:
                same_tag_or_conflict(open_stream.tag, again)
            except ContractError:
                open_stream.review_blocked = "conflicting_start"
                # Its clip may be built or being saved already: the store's one thread runs
                # this after that save, and it only ever narrows.
                block_review(self._parts, utterance_id)
                raise
            self._parts.stats.duplicates += 1
            self._claim(start)  # our claim may not have reached the device: it sends the start again
            return
        finished = self._book.finished_tag(utterance_id)
        if finished is not None:
            self._on_finished_start(finished, again, utterance_id)
            self._publish(start.device_id, UtteranceStored(utterance_id=utterance_id))
            return
        self._parts.quotas.admit_device(start.device_id)
        stream, orphans = self._book.opened(start)
        # The task owns the stream (and releases its quota) from here on, whatever follows.
        stream.task = asyncio.create_task(serve(self._parts, self._book, stream), name=f"utterance-{utterance_id}")
        self._claim(start)
        if orphans is None:
            return
        for chunk in orphans.chunks:
            try:
                self._book.add_chunk(stream, chunk)
            except ContractError as err:
                self._parts.reject(
                    err.code, topics.utterance(start.device_id, utterance_id, topics.UtterancePart.AUDIO)
                )
        if orphans.end is not None:
            self._book.set_end(stream, orphans.end)

    def _claim(self, start: UtteranceStart) -> None:
        """Tell the device this worker serves the utterance: its audio and end come here."""
        self._parts.stats.claims += 1
        self._publish(
            start.device_id, UtteranceClaimed(utterance_id=start.utterance_id, worker_id=self._settings.client_id)
        )

    def _on_finished_start(self, stored: ConsentTag, again: ConsentTag, utterance_id: UUID) -> None:
        try:
            same_tag_or_conflict(stored, again)
        except ContractError:
            block_review(self._parts, utterance_id)  # stored already: the cloud may still narrow it, never widen it
            raise
        self._parts.stats.duplicates += 1

    def _publish(self, device_id: str, message: ToDevice) -> None:
        """To a device, on its results topic."""
        if self._client is not None:
            self._client.publish(topics.results(device_id), encode_json(message), qos=1)

"""The device uplink: streams each utterance to the cloud over MQTT 5 while the user speaks.

* What each utterance sends (chunks from the pre-roll on, the start with its consent
  tag, fail closed) is `firmware.utterance_writer`'s; this module delivers it. The tag
  only ever narrows review: the cloud checks it against its own registry.
* Messages wait in a bounded outbox and leave it only when the broker acknowledged them
  (QoS 1), so a broker outage delays an utterance instead of cutting it. They are sent
  only while a pipeline worker announces (retained `PipelineStatus`) that it listens: a
  broker restarted without persistence acknowledges, then drops, whatever is published
  before the pipeline has subscribed again. If the outbox
  fills, the utterance in progress is abandoned explicitly: its unsent audio is dropped
  and an end message with reason `abandoned` tells the cloud how much it got.
* Nothing said is lost to a pipeline worker that dies. A start goes to any worker; the
  one that takes it answers `UtteranceClaimed`, and the audio and end go to that worker
  alone (they wait in the outbox until the claim comes). Every message of an utterance
  is kept after the broker acknowledged it, until the cloud's receipt
  (`UtteranceStored`) says it is stored. If no claim comes, if the claiming worker's
  presence is gone for a moment, or if no receipt comes, the whole utterance is sent
  again from its start (a bounded number of times); the cloud stores it once.
* paho's network thread only hands incoming messages to a worker thread.
* The cloud may cancel a stream (another speaker of the household answers): what is
  still unsent of it is dropped at once and nothing more of it is sent.
* Spoken privacy commands go out through the same outbox, in order after the request
  that carried them.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from contract import topics
from contract.errors import ContractError
from contract.messages import (
    DeviceStatus,
    PipelineStatus,
    PrivacyReply,
    PrivacyRequest,
    RecognitionResult,
    UtteranceCancelled,
    UtteranceClaimed,
    UtteranceStored,
    decode_cloud_message,
    decode_json,
    encode_json,
)
from contract.mqtt import MqttSettings, build_client, connect_in_background
from firmware import __version__
from firmware.consent_cache import ConsentCache
from firmware.events import FrontEndEvent
from firmware.outbox import Out, Outbox, UplinkSettings, UplinkStats
from firmware.utterance_writer import UtteranceWriter

_LOGGER = logging.getLogger(__name__)
_PIPELINES_PREFIX = f"{topics.ROOT}/pipelines/"


class DeviceIdentity(BaseModel):
    """Who this device is and which household it belongs to."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    device_id: topics.SafeId
    household_id: topics.SafeId


class Uplink:
    """Subscribe it to the front end; it streams every utterance to the broker."""

    def __init__(
        self,
        identity: DeviceIdentity,
        mqtt_settings: MqttSettings,
        settings: UplinkSettings,
        consent: ConsentCache,
        *,
        on_result: Callable[[RecognitionResult], None] | None = None,
        on_cloud: Callable[[UtteranceCancelled | PrivacyReply], None] | None = None,
        client_factory: Callable[[MqttSettings, str], Any] = build_client,
    ) -> None:
        self._identity = identity
        self._mqtt = mqtt_settings
        self._settings = settings
        self._consent = consent
        self._on_result = on_result
        self._on_cloud = on_cloud
        self._client = client_factory(mqtt_settings, identity.device_id)
        self.stats = UplinkStats()
        self._outbox = Outbox(identity.device_id, settings, self.stats)
        self._cond = self._outbox.cond
        self._reset_inflight = threading.Event()
        self.connected = threading.Event()
        self.pipeline_listening = threading.Event()
        self._running = threading.Event()
        self._writer = UtteranceWriter(identity.device_id, identity.household_id, consent, self._outbox, self.stats)
        self._cancelled: collections.deque[UUID] = collections.deque(maxlen=64)
        self._inbox: queue.Queue[tuple[str, bytes] | None] = queue.Queue(maxsize=256)
        self._threads: list[threading.Thread] = []

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background (the broker may be down) and start delivering."""
        client = self._client
        offline = DeviceStatus(device_id=self._identity.device_id, online=False)
        client.will_set(topics.status(self._identity.device_id), encode_json(offline), qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        connect_in_background(client, self._mqtt, "the device")
        self._running.set()
        for name, target in (("uplink-sender", self._send_loop), ("uplink-inbox", self._inbox_loop)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, drain_seconds: float = 10.0) -> bool:
        """Deliver what is queued (bounded wait), say offline, disconnect. True if drained."""
        drained = self.wait_drained(drain_seconds)
        if self.connected.is_set():
            offline = DeviceStatus(device_id=self._identity.device_id, online=False)
            info = self._client.publish(topics.status(self._identity.device_id), encode_json(offline), 1, True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(2.0)
        self._running.clear()
        with self._cond:
            self._cond.notify_all()
        self._inbox.put(None)
        for thread in self._threads:
            thread.join(timeout=5)
        self._client.disconnect()
        self._client.loop_stop()
        return drained

    def wait_drained(self, timeout: float) -> bool:
        """Wait until every queued message is acknowledged."""
        with self._cond:
            return self._cond.wait_for(lambda: self._outbox.empty, timeout)

    def wait_for_stored(self, utterance_ids: Iterable[UUID], timeout: float) -> set[UUID]:
        """Wait for the cloud's receipts of these utterances; return those still missing."""
        wanted = set(utterance_ids)
        with self._cond:
            self._cond.wait_for(lambda: wanted <= self.stats.stored, timeout)
            return wanted - self.stats.stored

    def wait_settled(self, utterance_ids: Iterable[UUID], timeout: float) -> set[UUID]:
        """Wait until the cloud stored or cancelled these utterances; return those still open."""
        wanted = set(utterance_ids)
        with self._cond:
            self._cond.wait_for(lambda: wanted <= self.stats.stored | self.stats.cancelled_ids, timeout)
            return wanted - self.stats.stored - self.stats.cancelled_ids

    def wait_for_finals(self, utterance_ids: Iterable[UUID], timeout: float) -> set[UUID]:
        """Wait for the final transcripts of these utterances; return those still missing."""
        wanted = set(utterance_ids)
        with self._cond:
            self._cond.wait_for(lambda: wanted <= self.stats.finals, timeout)
            return wanted - self.stats.finals

    # -- paho thread: hand off only -----------------------------------------------------

    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        if reason_code.is_failure:
            _LOGGER.warning("broker refused the connection: %s", reason_code)
            return
        with self._cond:
            # What the broker now holds is what counts: a restarted one may have forgotten the
            # workers (their retained presence comes again right after this subscription).
            self._outbox.pipelines.clear()
            self.pipeline_listening.clear()
        client.subscribe(
            [
                (topics.consent(self._identity.household_id), 1),
                (topics.results(self._identity.device_id), 1),
                (topics.pipeline_status_filter(), 1),
            ]
        )
        online = DeviceStatus(device_id=self._identity.device_id, online=True, firmware_version=__version__)
        client.publish(topics.status(self._identity.device_id), encode_json(online), qos=1, retain=True)
        self._reset_inflight.set()  # whatever was in flight is sent again; the cloud drops duplicates
        self.connected.set()
        with self._cond:
            self._cond.notify_all()
        _LOGGER.info("connected to the broker")

    def _on_disconnect(self, _client: Any, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        self.connected.clear()
        self._reset_inflight.set()
        if self._running.is_set():
            _LOGGER.warning("lost the broker (%s); reconnecting with backoff", reason_code)

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        if message.topic.startswith(_PIPELINES_PREFIX):
            # Handled right here, in order with the reset in _on_connect, and never lost to
            # a full inbox: the send loop's gate depends on it. It costs a small JSON parse.
            try:
                self._pipeline_presence(message.topic, bytes(message.payload))
            except ContractError as err:
                _LOGGER.warning("ignored a pipeline presence message: %s", err.code)
            return
        try:
            self._inbox.put_nowait((message.topic, bytes(message.payload)))
        except queue.Full:
            self.stats.inbox_dropped += 1

    # -- worker threads -----------------------------------------------------------------

    def _inbox_loop(self) -> None:
        while True:
            item = self._inbox.get()
            if item is None:
                return
            topic, payload = item
            try:
                if topic == topics.consent(self._identity.household_id):
                    self._consent.update(payload)
                elif topic == topics.results(self._identity.device_id):
                    result = decode_cloud_message(payload)
                    if isinstance(result, UtteranceClaimed | UtteranceStored):
                        with self._cond:
                            self._outbox.news(result)
                        continue
                    if not isinstance(result, RecognitionResult):
                        if isinstance(result, UtteranceCancelled):
                            self.drop(result.utterance_id)
                        if self._on_cloud is not None:
                            self._on_cloud(result)
                        continue
                    self.stats.results += 1
                    if result.final:
                        with self._cond:
                            self.stats.finals.add(result.utterance_id)
                            self._cond.notify_all()
                    if self._on_result is not None:
                        self._on_result(result)
            except ContractError as err:
                _LOGGER.warning("ignored a message on %s: %s", topic, err.code)
            except Exception:
                _LOGGER.exception("failed to handle a message on %s", topic)

    def _pipeline_presence(self, topic: str, payload: bytes) -> None:
        worker = topic.split("/")[-2]
        online = bool(payload) and decode_json(PipelineStatus, payload).online
        with self._cond:
            if online:
                self._outbox.pipelines.add(worker)
            else:
                self._outbox.pipelines.discard(worker)
            if self._outbox.pipelines:
                self.pipeline_listening.set()
            else:
                self.pipeline_listening.clear()
            self._cond.notify_all()

    def _send_loop(self) -> None:
        while self._running.is_set():
            if self._reset_inflight.is_set():
                self._reset_inflight.clear()
                with self._cond:
                    self._outbox.lost_inflight()
            if not self.connected.is_set():
                self.connected.wait(0.2)
                continue
            if not self.pipeline_listening.is_set():
                self.pipeline_listening.wait(0.2)
                continue
            with self._cond:
                now = time.monotonic()
                self._outbox.acknowledged(now)
                self._outbox.check(now)
                ready = self._outbox.next_to_send()
                if ready is None:
                    # Nothing to send, the window is full, or the next message waits for its
                    # utterance's claim: poll soon while anything is under way.
                    self._cond.wait(0.005 if self._outbox.busy() else 0.1)
                    continue
            item, topic = ready
            # Publish outside the lock: paho takes its own locks and calls back into us.
            info = self._client.publish(topic, item.payload, qos=1, retain=item.retain)
            if info.rc != 0:
                self.connected.wait(0.2)  # not connected after all; retry after reconnect
                continue
            with self._cond:
                self._outbox.published(item, info)

    # -- front-end side (audio thread) --------------------------------------------------

    def handle(self, event: FrontEndEvent) -> None:
        """Front-end subscriber: turn events into stream messages."""
        self._writer.handle(event)

    def drop(self, utterance_id: UUID) -> None:
        """The cloud cancelled this utterance: send nothing more of it (any thread)."""
        self._writer.stop_sending(utterance_id)
        with self._cond:
            unsent = self._outbox.cancel(utterance_id)  # nothing of it is stored: nothing to resend
            self.stats.cancelled_ids.add(utterance_id)
            self._cond.notify_all()
        self._cancelled.append(utterance_id)
        _LOGGER.info("utterance %s cancelled by the cloud (%d messages unsent)", utterance_id, unsent)

    def cancelled_utterance(self) -> UUID | None:
        """An utterance the cloud cancelled since the last call, for the audio thread to end."""
        try:
            return self._cancelled.popleft()
        except IndexError:
            return None

    def send_privacy(self, request: PrivacyRequest) -> None:
        """Queue a spoken privacy command for the consent service (behind its own request)."""
        self._outbox.enqueue(Out(None, topics.privacy(self._identity.device_id), encode_json(request)))

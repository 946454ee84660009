"""The device uplink: streams each utterance to the cloud over MQTT 5 while the user speaks.

* Streaming starts with the pre-roll the moment the wake word fires, in the contract's
  160 ms chunks (the front end's 80 ms frames are paired up).
* Every stream opens with the household's consent tag as this device last saw it in a
  message *signed by the consent service*; unknown consent is sent as
  `review_allowed=false` (fail closed). The tag only ever narrows review: the cloud
  checks it against its own registry.
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
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from nacl.signing import VerifyKey
from pydantic import BaseModel, ConfigDict, Field

from contract import topics
from contract.audio import bytes_to_seconds, seconds_to_bytes
from contract.consent_signature import load_public_key, verify_consent
from contract.errors import ContractError
from contract.messages import (
    CHUNK_SECONDS,
    FLAG_PREROLL,
    AudioChunk,
    AudioFormat,
    ConsentState,
    DeviceStatus,
    EndReason,
    PipelineStatus,
    PrivacyReply,
    PrivacyRequest,
    RecognitionResult,
    UtteranceCancelled,
    UtteranceClaimed,
    UtteranceEnd,
    UtteranceStart,
    UtteranceStored,
    decode_cloud_message,
    decode_json,
    encode_json,
)
from contract.mqtt import MqttSettings, build_client, connect_in_background
from firmware import __version__
from firmware.events import FrontEndEvent, SpeechEnded, UtteranceAudio, WakeDetected
from firmware.state_file import write_atomically

_LOGGER = logging.getLogger(__name__)
_PIPELINES_PREFIX = f"{topics.ROOT}/pipelines/"


class DeviceIdentity(BaseModel):
    """Who this device is and which household it belongs to."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    device_id: topics.SafeId
    household_id: topics.SafeId


class UplinkSettings(BaseModel):
    """Outbox bounds and delivery pacing."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    outbox_audio_seconds: float = Field(60.0, ge=1, le=600, description="audio held while the broker is away")
    window_messages: int = Field(32, ge=1, le=1000, description="unacknowledged messages in flight")
    claim_timeout_seconds: float = Field(
        5.0, gt=0, le=300, description="no worker claimed a start this long after the broker took it: send it again"
    )
    claimant_grace_seconds: float = Field(
        2.0, gt=0, le=300, description="the claiming worker's presence gone this long: send the utterance to another"
    )
    receipt_timeout_seconds: float = Field(
        60.0, gt=0, le=3600, description="no receipt this long after the end went out: send the utterance again"
    )
    max_resends: int = Field(5, ge=0, le=100, description="whole-utterance resends before giving up on a receipt")


class ConsentCache:
    """The household's consent as last seen in a validly signed message, persisted across restarts.

    Anyone who can publish on the broker can send a consent message; only the consent
    service can sign one. Without the service's public key nothing is adopted (fail
    closed: no review). The signed envelope itself is what is persisted, and it is
    verified again when read back.
    """

    def __init__(self, path: Path, household_id: str, public_key: VerifyKey | None) -> None:
        self._path = path
        self._household_id = household_id
        self._public_key = public_key
        self._lock = threading.Lock()
        self._state: ConsentState | None = None
        self.ignored: collections.Counter[str] = collections.Counter()  # by reason, for doctor and tests
        if public_key is None:
            _LOGGER.warning("no consent public key: consent messages are ignored and every clip says 'no review'")
            return
        try:
            self._state = verify_consent(path.read_bytes(), public_key, household_id)
        except FileNotFoundError:
            pass
        except ContractError as err:
            # A damaged or forged cache is unknown consent, which means no review.
            _LOGGER.warning("ignoring consent cache %s (%s)", path, err.code)

    @classmethod
    def open(cls, state_dir: Path, household_id: str, public_key_path: Path | None) -> ConsentCache:
        """The cache in a state directory, verifying with the key at `public_key_path` (ContractError if unreadable)."""
        public_key = load_public_key(public_key_path.expanduser()) if public_key_path is not None else None
        return cls(state_dir.expanduser() / "consent.json", household_id, public_key)

    def current(self) -> tuple[bool, int]:
        """(review_allowed, consent_version); unknown is (False, 0)."""
        with self._lock:
            if self._state is None:
                return False, 0
            return self._state.review_allowed, self._state.consent_version

    def update(self, payload: bytes) -> bool:
        """Adopt a newer, validly signed consent state for this household and persist it; False if ignored."""
        if self._public_key is None:
            self.ignored["no_public_key"] += 1
            return False
        try:
            state = verify_consent(payload, self._public_key, self._household_id)
        except ContractError as err:
            self.ignored[err.code] += 1
            _LOGGER.warning("ignored a consent message: %s", err.code)
            return False
        with self._lock:
            if self._state is not None and state.consent_version <= self._state.consent_version:
                if state.consent_version < self._state.consent_version:
                    self.ignored["replayed_older"] += 1  # a stale or replayed message never rolls consent back
                return False
            self._state = state
            write_atomically(self._path, payload.decode())
        _LOGGER.info(
            "consent for household is now review_allowed=%s (v%d)", state.review_allowed, state.consent_version
        )
        return True


@dataclass
class _Out:
    utterance_id: UUID | None
    topic: str  # for a start; audio and ends are addressed when they leave (to the claiming worker)
    payload: bytes
    audio_bytes: int = 0
    retain: bool = False
    part: topics.UtterancePart | None = None
    attempt: int = 0  # which sending of its utterance this copy belongs to


@dataclass
class _Delivery:
    """One utterance from its start until the cloud's receipt: what was sent, to whom."""

    attempt: int = 0
    worker_id: str | None = None  # the worker that claimed this attempt
    sent: list[_Out] = field(default_factory=list)  # acknowledged by the broker, in order
    sent_audio_bytes: int = 0
    start_sent_at: float | None = None  # monotonic seconds, this attempt
    end_sent_at: float | None = None
    claimant_missing_since: float | None = None
    resends: int = 0


@dataclass
class _Stream:
    utterance_id: UUID
    wake_word: str
    wake_score: float
    woke_at: datetime
    next_sequence: int = 0
    started: bool = False
    abandoned: bool = False
    pending: bytearray = field(default_factory=bytearray)  # audio waiting to fill a whole chunk
    pending_preroll: bool = False


@dataclass
class UplinkStats:
    """Counters for tests and `doctor`."""

    published: int = 0
    abandoned: int = 0
    results: int = 0
    cancelled_ids: set[UUID] = field(default_factory=set)
    inbox_dropped: int = 0
    finals: set[UUID] = field(default_factory=set)
    stored: set[UUID] = field(default_factory=set)  # the cloud's receipts
    resends: collections.Counter[str] = field(default_factory=collections.Counter)  # by reason
    unconfirmed: int = 0  # given up on after max_resends


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
        self._outbox: collections.deque[_Out] = collections.deque()
        self._outbox_audio_bytes = 0
        self._outbox_limit_bytes = seconds_to_bytes(settings.outbox_audio_seconds)
        self._inflight: collections.deque[Any] = collections.deque()  # infos of outbox[0:len]
        self._cond = threading.Condition()
        self._reset_inflight = threading.Event()
        self.connected = threading.Event()
        self.pipeline_listening = threading.Event()
        self._pipelines: set[str] = set()  # workers whose presence is retained on the broker
        self._running = threading.Event()
        self._streams: dict[UUID, _Stream] = {}
        self._deliveries: dict[UUID, _Delivery] = {}  # under _cond
        self._cancelled: collections.deque[UUID] = collections.deque(maxlen=64)
        self._inbox: queue.Queue[tuple[str, bytes] | None] = queue.Queue(maxsize=256)
        self.stats = UplinkStats()
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
            return self._cond.wait_for(lambda: not self._outbox, timeout)

    def wait_for_stored(self, utterance_ids: Iterable[UUID], timeout: float) -> set[UUID]:
        """Wait for the cloud's receipts of these utterances; return those still missing."""
        wanted = set(utterance_ids)
        with self._cond:
            self._cond.wait_for(lambda: wanted <= self.stats.stored, timeout)
            return wanted - self.stats.stored

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
            self._pipelines.clear()
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
                        self._on_delivery_news(result)
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
                self._pipelines.add(worker)
            else:
                self._pipelines.discard(worker)
            if self._pipelines:
                self.pipeline_listening.set()
            else:
                self.pipeline_listening.clear()
            self._cond.notify_all()

    def _on_delivery_news(self, news: UtteranceClaimed | UtteranceStored) -> None:
        with self._cond:
            delivery = self._deliveries.get(news.utterance_id)
            if isinstance(news, UtteranceStored):
                self.stats.stored.add(news.utterance_id)
                if delivery is not None:
                    del self._deliveries[news.utterance_id]
                    self._remove_unsent(news.utterance_id, audio_only=False)  # resent copies: not needed
            elif delivery is not None and delivery.worker_id is None:
                # The first claim wins; a later one (our start sent twice) is a worker that
                # hears nothing more and therefore keeps nothing.
                delivery.worker_id = news.worker_id
            self._cond.notify_all()

    def _check_deliveries(self, now: float) -> None:
        """Send again, from its start, every utterance whose worker is gone or silent (under `_cond`)."""
        for utterance_id, delivery in list(self._deliveries.items()):
            reason = None
            if delivery.worker_id is None:
                if (
                    delivery.start_sent_at is not None
                    and now - delivery.start_sent_at > self._settings.claim_timeout_seconds
                ):
                    reason = "no_claim"
            elif delivery.worker_id not in self._pipelines:
                if delivery.claimant_missing_since is None:
                    delivery.claimant_missing_since = now
                elif now - delivery.claimant_missing_since > self._settings.claimant_grace_seconds:
                    reason = "worker_gone"
            else:
                delivery.claimant_missing_since = None
                if (
                    delivery.end_sent_at is not None
                    and now - delivery.end_sent_at > self._settings.receipt_timeout_seconds
                ):
                    reason = "no_receipt"
            if reason is not None:
                self._resend(utterance_id, delivery, reason)

    def _resend(self, utterance_id: UUID, delivery: _Delivery, reason: str) -> None:
        """Queue the whole utterance again, ahead of anything not yet in flight (under `_cond`)."""
        in_flight = [
            o for o in list(self._outbox)[: len(self._inflight)]
            if o.utterance_id == utterance_id and o.part is not None and o.attempt == delivery.attempt
        ]  # fmt: skip
        unsent = self._remove_unsent(utterance_id, audio_only=False)
        if delivery.resends >= self._settings.max_resends:
            del self._deliveries[utterance_id]
            self.stats.unconfirmed += 1
            _LOGGER.warning(
                "utterance %s: no receipt after %d resends; giving up on it", utterance_id, delivery.resends
            )
            return
        delivery.resends += 1
        delivery.attempt += 1
        again = [replace(o, attempt=delivery.attempt) for o in [*delivery.sent, *in_flight, *unsent]]
        delivery.sent, delivery.sent_audio_bytes = [], 0
        delivery.worker_id = delivery.start_sent_at = delivery.end_sent_at = delivery.claimant_missing_since = None
        position = len(self._inflight)
        for offset, item in enumerate(again):
            self._outbox.insert(position + offset, item)
            self._outbox_audio_bytes += item.audio_bytes
        self.stats.resends[reason] += 1
        _LOGGER.warning("utterance %s: sending it again (%s, %d messages)", utterance_id, reason, len(again))

    def _sent(self, item: _Out, now: float) -> None:
        """The broker acknowledged `item` (under `_cond`): keep it until the cloud's receipt."""
        delivery = self._deliveries.get(item.utterance_id) if item.utterance_id is not None else None
        if delivery is None or item.part is None or item.attempt != delivery.attempt:
            return
        delivery.sent.append(item)
        delivery.sent_audio_bytes += item.audio_bytes
        if item.part is topics.UtterancePart.START:
            delivery.start_sent_at = now
        elif item.part is topics.UtterancePart.END:
            delivery.end_sent_at = now
        # Bounded like the outbox: past it, the oldest finished utterances can no longer be resent.
        kept = sum(d.sent_audio_bytes for d in self._deliveries.values())
        for utterance_id, old in list(self._deliveries.items()):
            if kept <= self._outbox_limit_bytes:
                break
            if old.end_sent_at is not None and old is not delivery:
                kept -= old.sent_audio_bytes
                del self._deliveries[utterance_id]
                self.stats.unconfirmed += 1
                _LOGGER.warning("utterance %s: too much unconfirmed audio; it can no longer be resent", utterance_id)

    def _address(self, item: _Out) -> str | None:
        """Where `item` goes now; "" if it must not go at all; None while its utterance waits
        for a claim (under `_cond`)."""
        if item.part is None or item.utterance_id is None:
            return item.topic
        delivery = self._deliveries.get(item.utterance_id)
        if delivery is None or item.attempt != delivery.attempt:
            return ""  # its utterance is settled, or this copy belongs to a sending given up
        if item.part is topics.UtterancePart.START:
            return item.topic
        if delivery.worker_id is None:
            return None
        return topics.utterance(self._identity.device_id, item.utterance_id, item.part, delivery.worker_id)

    def _send_loop(self) -> None:
        while self._running.is_set():
            if self._reset_inflight.is_set():
                self._reset_inflight.clear()
                with self._cond:
                    self._inflight.clear()
            if not self.connected.is_set():
                self.connected.wait(0.2)
                continue
            if not self.pipeline_listening.is_set():
                self.pipeline_listening.wait(0.2)
                continue
            with self._cond:
                now = time.monotonic()
                while self._inflight and self._inflight[0].is_published():
                    self._inflight.popleft()
                    done = self._outbox.popleft()
                    self._outbox_audio_bytes -= done.audio_bytes
                    self._sent(done, now)
                    self.stats.published += 1
                    self._cond.notify_all()
                self._check_deliveries(now)
                item = topic = None
                if len(self._inflight) < self._settings.window_messages and len(self._outbox) > len(self._inflight):
                    item = self._outbox[len(self._inflight)]
                    topic = self._address(item)
                    if topic == "":
                        # Never sent (e.g. an old sending's copy found unsent after a reconnect):
                        # leaving it would block everything behind it.
                        del self._outbox[len(self._inflight)]
                        self._outbox_audio_bytes -= item.audio_bytes
                        continue
                if item is None or topic is None:
                    # Nothing to send, or the next message waits for its utterance's claim.
                    self._cond.wait(0.005 if self._inflight or item is not None else 0.1)
                    continue
            # Publish outside the lock: paho takes its own locks and calls back into us.
            info = self._client.publish(topic, item.payload, qos=1, retain=item.retain)
            if info.rc != 0:
                self.connected.wait(0.2)  # not connected after all; retry after reconnect
                continue
            with self._cond:
                index = len(self._inflight)
                if index < len(self._outbox) and self._outbox[index] is item:
                    self._inflight.append(info)

    # -- front-end side (audio thread) --------------------------------------------------

    def handle(self, event: FrontEndEvent) -> None:
        """Front-end subscriber: turn events into stream messages."""
        if isinstance(event, WakeDetected):
            self._streams[event.utterance_id] = _Stream(
                event.utterance_id, event.wake_word, event.score, datetime.now(UTC)
            )
            with self._cond:
                self._deliveries[event.utterance_id] = _Delivery()
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
                self._enqueue(_Out(stream.utterance_id, "", encode_json(end), part=topics.UtterancePart.END))

    def drop(self, utterance_id: UUID) -> None:
        """The cloud cancelled this utterance: send nothing more of it (any thread)."""
        stream = self._streams.get(utterance_id)
        if stream is not None:
            stream.abandoned = True  # the audio thread sends no more audio and no end
        with self._cond:
            unsent = self._remove_unsent(utterance_id, audio_only=False)
            self._deliveries.pop(utterance_id, None)  # nothing of it is stored: nothing to resend
            self.stats.cancelled_ids.add(utterance_id)
            self._cond.notify_all()
        self._cancelled.append(utterance_id)
        _LOGGER.info("utterance %s cancelled by the cloud (%d messages unsent)", utterance_id, len(unsent))

    def cancelled_utterance(self) -> UUID | None:
        """An utterance the cloud cancelled since the last call, for the audio thread to end."""
        try:
            return self._cancelled.popleft()
        except IndexError:
            return None

    def send_privacy(self, request: PrivacyRequest) -> None:
        """Queue a spoken privacy command for the consent service (behind its own request)."""
        self._enqueue(_Out(None, topics.privacy(self._identity.device_id), encode_json(request)))

    def _open(self, stream: _Stream, preroll_seconds: float) -> None:
        review_allowed, consent_version = self._consent.current()
        start = UtteranceStart(
            device_id=self._identity.device_id,
            household_id=self._identity.household_id,
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
        topic = topics.utterance(self._identity.device_id, stream.utterance_id, topics.UtterancePart.START)
        self._enqueue(_Out(stream.utterance_id, topic, encode_json(start), part=topics.UtterancePart.START))

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
            if not self._enqueue(_Out(stream.utterance_id, "", chunk.encode(), audio_bytes=len(pcm), part=audio)):
                self._abandon(stream)
                return False
            del stream.pending[:step]
            stream.next_sequence += 1
        return True

    def _enqueue(self, item: _Out) -> bool:
        with self._cond:
            if item.audio_bytes and self._outbox_audio_bytes + item.audio_bytes > self._outbox_limit_bytes:
                return False
            if item.part is not None and item.utterance_id is not None:
                delivery = self._deliveries.get(item.utterance_id)
                if delivery is None:
                    return True  # cancelled, stored or given up meanwhile: nothing more of it goes
                item.attempt = delivery.attempt  # belongs to the sending under way (maybe a resend)
            self._outbox.append(item)
            self._outbox_audio_bytes += item.audio_bytes
            self._cond.notify_all()
            return True

    def _remove_unsent(self, utterance_id: UUID, *, audio_only: bool) -> list[_Out]:
        """Take an utterance's messages that are not in flight out of the outbox (under
        `_cond`); with `audio_only`, its chunks only. Returns what was removed."""
        unsent = list(self._outbox)[len(self._inflight) :]
        removed = [o for o in unsent if o.utterance_id == utterance_id and (o.audio_bytes or not audio_only)]
        for item in removed:
            self._outbox.remove(item)
            self._outbox_audio_bytes -= item.audio_bytes
        return removed

    def _abandon(self, stream: _Stream) -> None:
        """Drop the unsent audio of an utterance and say so; never half-deliver silently."""
        with self._cond:
            dropped = self._remove_unsent(stream.utterance_id, audio_only=True)
        delivered = stream.next_sequence - len(dropped)
        stream.abandoned = True
        self.stats.abandoned += 1
        end = UtteranceEnd(utterance_id=stream.utterance_id, reason=EndReason.ABANDONED, chunk_count=delivered)
        self._enqueue(_Out(stream.utterance_id, "", encode_json(end), part=topics.UtterancePart.END))
        _LOGGER.warning(
            "utterance %s abandoned: broker unreachable and the outbox is full (%d of %d chunks kept)",
            stream.utterance_id,
            delivered,
            stream.next_sequence,
        )


_NOT_RECOGNIZED = {
    "no_recognizer": "not transcribed: the cloud runs without a speech recognizer (earmark models fetch-default)",
    "muted": "not transcribed: the request was cut off by the mute button",
}


def result_line(result: RecognitionResult) -> str:
    """The JSON line the CLI prints for a recognition result (with a note when nothing was recognized)."""
    line = {**result.model_dump(mode="json", exclude_none=True), "type": "transcript"}
    if result.not_recognized is not None:
        line["note"] = _NOT_RECOGNIZED[result.not_recognized]
    return json.dumps(line, ensure_ascii=False)

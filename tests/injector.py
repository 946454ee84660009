"""Hand-made utterance streams over a real broker, as a buggy or hostile device would send them."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from contract import topics
from contract.messages import AudioChunk, AudioFormat, EndReason, UtteranceEnd, UtteranceStart, encode_json
from tests.broker import Broker


def client(broker: Broker, name: str) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    return c


class Injector:
    """Publishes hand-made streams, as a buggy or hostile device would."""

    def __init__(self, broker: Broker, device: str = "kitchen-1", household: str = "h-42") -> None:
        self.device = device
        self.household = household
        # Audio and ends go to a worker by name; a hostile device needs no claim to name one,
        # so this one addresses whichever worker announces itself.
        self._workers: set[str] = set()
        self._workers_seen = threading.Condition()
        self.client = client(broker, f"injector-{uuid.uuid4()}")
        self.client.on_message = self._on_presence
        self.client.subscribe(topics.pipeline_status_filter(), qos=1)

    def _on_presence(self, _client: Any, _userdata: Any, message: Any) -> None:
        worker = message.topic.split("/")[-2]
        with self._workers_seen:
            if message.payload:
                self._workers.add(worker)
            else:
                self._workers.discard(worker)
            self._workers_seen.notify_all()

    @property
    def worker(self) -> str:
        """The one pipeline worker listening on this broker."""
        with self._workers_seen:
            self._workers_seen.wait_for(lambda: len(self._workers) == 1, 10)
            assert len(self._workers) == 1, f"expected one pipeline worker, saw {sorted(self._workers)}"
            return next(iter(self._workers))

    def topic(self, utterance_id: uuid.UUID, part: topics.UtterancePart) -> str:
        """Where this device's `part` of an utterance goes (to the listening worker)."""
        worker = None if part is topics.UtterancePart.START else self.worker
        return topics.utterance(self.device, utterance_id, part, worker)

    def send(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def start(self, utterance_id: uuid.UUID, **changes: Any) -> None:
        start = UtteranceStart(
            device_id=self.device,
            household_id=self.household,
            utterance_id=utterance_id,
            capture_started_at=datetime.now(UTC),
            audio_format=AudioFormat(),
            wake_word="alexa",
            wake_score=0.9,
            firmware_version="test",
            review_allowed=True,
            consent_version=5,
        )
        fields = {**json.loads(encode_json(start)), **changes}
        fields = {k: v for k, v in fields.items() if v is not ...}
        self.send(self.topic(utterance_id, topics.UtterancePart.START), json.dumps(fields).encode())

    def chunk(self, utterance_id: uuid.UUID, sequence: int, pcm: bytes, flags: int = 0) -> None:
        chunk = AudioChunk(sequence=sequence, flags=flags, pcm=pcm)
        self.send(self.topic(utterance_id, topics.UtterancePart.AUDIO), chunk.encode())

    def end(self, utterance_id: uuid.UUID, chunk_count: int, reason: EndReason = EndReason.SILENCE) -> None:
        end = UtteranceEnd(utterance_id=utterance_id, reason=reason, chunk_count=chunk_count)
        self.send(self.topic(utterance_id, topics.UtterancePart.END), encode_json(end))

    def stream(self, chunks: list[bytes], end: EndReason | None = EndReason.SILENCE) -> uuid.UUID:
        """A whole utterance in order: start, every chunk, and (unless None) its end."""
        utterance_id = uuid.uuid4()
        self.start(utterance_id)
        for sequence, pcm in enumerate(chunks):
            self.chunk(utterance_id, sequence, pcm)
        if end is not None:
            self.end(utterance_id, len(chunks), end)
        return utterance_id

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class RoutedInjector(Injector):
    """A device for several workers: it sees which worker claims each start (or answers it
    as stored) and addresses that one; the parts of a start nobody claims go to the
    workers in turn (round-robin), as a hostile device might split them."""

    ANSWER_SECONDS = 2.0  # how long a start waits for a claim or a receipt before moving on

    def __init__(self, broker: Broker, device: str = "kitchen-1", household: str = "h-42") -> None:
        super().__init__(broker, device, household)
        self._answers = threading.Condition()
        self.claims: dict[uuid.UUID, list[str]] = {}
        self.receipts: set[uuid.UUID] = set()
        self.cancellations: set[uuid.UUID] = set()
        self.routes: dict[uuid.UUID, str] = {}
        self._turn = 0
        self.client.message_callback_add(topics.results(device), self._on_result)
        result, _mid = self.client.subscribe(topics.results(device), qos=1)
        assert result == 0

    def _on_result(self, _client: Any, _userdata: Any, message: Any) -> None:
        answer = json.loads(message.payload)
        utterance_id = uuid.UUID(answer["utterance_id"])
        with self._answers:
            if answer["type"] == "utterance_claimed":
                self.claims.setdefault(utterance_id, []).append(answer["worker_id"])
            elif answer["type"] == "utterance_stored":
                self.receipts.add(utterance_id)
            elif answer["type"] == "utterance_cancelled":
                self.cancellations.add(utterance_id)
            self._answers.notify_all()

    def start(self, utterance_id: uuid.UUID, **changes: Any) -> None:
        """Send a start; the rest goes to the first worker that claimed the utterance, as
        the real uplink does (a second claim of a start it sent again is ignored)."""
        worker = self._send_start(utterance_id, False, changes)
        if worker is not None:
            self.routes.setdefault(utterance_id, worker)

    def start_claimed(self, utterance_id: uuid.UUID, **changes: Any) -> str | None:
        """Send a start as a new attempt (a resend after a lost worker): the rest goes to the
        worker that claims it now; returns it (asserting that one did)."""
        worker = self._send_start(utterance_id, True, changes)
        assert worker is not None, f"no worker claimed {utterance_id}"
        self.routes[utterance_id] = worker
        return worker

    def _send_start(self, utterance_id: uuid.UUID, required: bool, changes: dict[str, Any]) -> str | None:
        with self._answers:
            before = len(self.claims.get(utterance_id, []))
            stored_before = utterance_id in self.receipts
        Injector.start(self, utterance_id, **changes)

        def answered() -> bool:
            return len(self.claims.get(utterance_id, [])) > before or (
                not required and not stored_before and utterance_id in self.receipts
            )

        with self._answers:
            self._answers.wait_for(answered, 30.0 if required else self.ANSWER_SECONDS)
            claims = self.claims.get(utterance_id, [])
            return claims[before] if len(claims) > before else None

    def wait_receipt(self, utterance_id: uuid.UUID) -> None:
        with self._answers:
            assert self._answers.wait_for(lambda: utterance_id in self.receipts, 30.0)

    def wait_cancelled(self, utterance_id: uuid.UUID) -> bool:
        with self._answers:
            return self._answers.wait_for(lambda: utterance_id in self.cancellations, 30.0)

    def topic(self, utterance_id: uuid.UUID, part: topics.UtterancePart) -> str:
        if part is topics.UtterancePart.START:
            return topics.utterance(self.device, utterance_id, part)
        worker = self.routes.get(utterance_id)
        if worker is None:  # nobody claimed it: the workers in turn
            with self._workers_seen:
                self._workers_seen.wait_for(lambda: bool(self._workers), 10)
                workers = sorted(self._workers)
            worker = workers[self._turn % len(workers)]
            self._turn += 1
        return topics.utterance(self.device, utterance_id, part, worker)

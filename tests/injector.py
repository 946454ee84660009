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

    def chunk(self, utterance_id: uuid.UUID, sequence: int, pcm: bytes) -> None:
        self.send(self.topic(utterance_id, topics.UtterancePart.AUDIO), AudioChunk(sequence=sequence, pcm=pcm).encode())

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

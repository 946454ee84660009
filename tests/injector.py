"""Hand-made utterance streams over a real broker, as a buggy or hostile device would send them."""

from __future__ import annotations

import json
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
        self.client = client(broker, f"injector-{uuid.uuid4()}")
        self.device = device
        self.household = household

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
        self.send(topics.utterance(self.device, utterance_id, topics.UtterancePart.START), json.dumps(fields).encode())

    def chunk(self, utterance_id: uuid.UUID, sequence: int, pcm: bytes) -> None:
        topic = topics.utterance(self.device, utterance_id, topics.UtterancePart.AUDIO)
        self.send(topic, AudioChunk(sequence=sequence, pcm=pcm).encode())

    def end(self, utterance_id: uuid.UUID, chunk_count: int, reason: EndReason = EndReason.SILENCE) -> None:
        end = UtteranceEnd(utterance_id=utterance_id, reason=reason, chunk_count=chunk_count)
        self.send(topics.utterance(self.device, utterance_id, topics.UtterancePart.END), encode_json(end))

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

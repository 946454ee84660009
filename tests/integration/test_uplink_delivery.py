"""The device keeps an utterance until the cloud's receipt: resent whole when no worker
claims it, or when no receipt comes (a worker that dies is covered by test_workers.py).

The cloud here is a hand-driven MQTT client on a real broker, playing a pipeline worker's
part of the protocol step by step, as the Injector plays a device's.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from contract import topics
from contract.messages import (
    AudioChunk,
    EndReason,
    PipelineStatus,
    UtteranceClaimed,
    UtteranceEnd,
    UtteranceStart,
    UtteranceStored,
    decode_json,
    encode_json,
)
from contract.mqtt import MqttSettings
from firmware.consent_cache import ConsentCache
from firmware.events import SpeechEnded, UtteranceAudio, WakeDetected
from firmware.outbox import UplinkSettings
from firmware.uplink import DeviceIdentity, Uplink
from tests.broker import Broker
from tests.conftest import wait_until

WORKER = "worker-under-test"
DEVICE = "kitchen-1"


class HandWorker:
    """Subscribes like a pipeline worker and records what reaches it; claims and receipts on request."""

    def __init__(self, broker: Broker) -> None:
        self.starts: list[UtteranceStart] = []
        self.chunks: list[int] = []  # sequence numbers, in arrival order
        self.ends: list[UtteranceEnd] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=WORKER, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        for topic_filter in (
            topics.shared("g", topics.utterance_start_filter()),
            topics.worker_utterance_filter(WORKER),
        ):
            self.client.subscribe(topic_filter, qos=1)
        online = encode_json(PipelineStatus(worker_id=WORKER, online=True))
        self.client.publish(topics.pipeline_status(WORKER), online, qos=1, retain=True).wait_for_publish(5)

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        parsed = topics.parse_utterance_topic(message.topic)
        with self._lock:
            if parsed.part is topics.UtterancePart.START:
                self.starts.append(decode_json(UtteranceStart, message.payload))
            elif parsed.part is topics.UtterancePart.AUDIO:
                self.chunks.append(AudioChunk.decode(message.payload).sequence)
            else:
                self.ends.append(decode_json(UtteranceEnd, message.payload))

    def say(self, message: UtteranceClaimed | UtteranceStored) -> None:
        self.client.publish(topics.results(DEVICE), encode_json(message), qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.publish(topics.pipeline_status(WORKER), b"", qos=1, retain=True).wait_for_publish(5)
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def worker(broker: Broker) -> Iterator[HandWorker]:
    hand = HandWorker(broker)
    yield hand
    hand.close()


def device(tmp_path: Path, broker: Broker, **settings: Any) -> Uplink:
    uplink = Uplink(
        DeviceIdentity(device_id=DEVICE, household_id="h-42"),
        MqttSettings(port=broker.port),
        UplinkSettings(**settings),
        ConsentCache(tmp_path / "consent.json", "h-42", None),
    )
    uplink.start()
    assert wait_until(uplink.pipeline_listening.is_set, 10)
    return uplink


def speak(uplink: Uplink, frames: int) -> uuid.UUID:
    """One utterance: the pre-roll and `frames` 80 ms frames (chunks of 160 ms go out), then its end."""
    utterance_id = uuid.uuid4()
    uplink.handle(WakeDetected(audio_time_seconds=0, utterance_id=utterance_id, wake_word="alexa", score=0.9))
    uplink.handle(UtteranceAudio(audio_time_seconds=0, utterance_id=utterance_id, sequence=0, audio=bytes(5120)))
    for k in range(1, frames + 1):
        uplink.handle(UtteranceAudio(audio_time_seconds=0, utterance_id=utterance_id, sequence=k, audio=bytes(2560)))
    uplink.handle(SpeechEnded(audio_time_seconds=0, utterance_id=utterance_id, reason=EndReason.SILENCE))
    return utterance_id


def test_audio_waits_for_a_claim_and_a_start_nobody_claims_is_sent_again(
    tmp_path: Path, broker: Broker, worker: HandWorker
) -> None:
    uplink = device(tmp_path, broker, claim_timeout_seconds=0.5)
    try:
        utterance_id = speak(uplink, frames=10)  # pre-roll 1 chunk + 5 chunks
        assert wait_until(lambda: len(worker.starts) == 1, 5)
        # Unclaimed, nothing but the start leaves the device; then the start goes again.
        assert wait_until(lambda: len(worker.starts) == 2, 5)
        assert worker.chunks == [] and worker.ends == []
        assert uplink.stats.resends["no_claim"] >= 1
        worker.say(UtteranceClaimed(utterance_id=utterance_id, worker_id=WORKER))
        assert wait_until(lambda: len(worker.ends) == 1, 5)
        # The audio went once, to the claiming worker, whichever sending of the start it claimed.
        assert worker.chunks == list(range(6)) and worker.ends[0].chunk_count == 6
        worker.say(UtteranceStored(utterance_id=utterance_id))
        assert uplink.wait_for_stored([utterance_id], 5) == set()
        assert set(uplink.stats.resends) == {"no_claim"} and uplink.stats.unconfirmed == 0
    finally:
        uplink.stop(drain_seconds=1)


def test_an_utterance_without_a_receipt_is_sent_again_whole_until_one_comes(
    tmp_path: Path, broker: Broker, worker: HandWorker
) -> None:
    uplink = device(tmp_path, broker, receipt_timeout_seconds=0.5, max_resends=2)
    try:
        claimed = threading.Event()

        def claim_every_start() -> None:
            seen = 0
            while not claimed.is_set():
                if len(worker.starts) > seen:
                    seen = len(worker.starts)
                    worker.say(UtteranceClaimed(utterance_id=worker.starts[-1].utterance_id, worker_id=WORKER))
                claimed.wait(0.01)

        claimer = threading.Thread(target=claim_every_start, daemon=True)
        claimer.start()
        first = speak(uplink, frames=4)  # 3 chunks
        # The worker got it all, but no receipt: after 0.5 s the device sends it all again.
        assert wait_until(lambda: len(worker.ends) >= 2, 10)
        worker.say(UtteranceStored(utterance_id=first))
        assert uplink.wait_for_stored([first], 5) == set()
        assert {s.utterance_id for s in worker.starts} == {first}
        assert worker.chunks[:6] == [0, 1, 2, 0, 1, 2]  # whole each time, from its start
        # Another one that never gets a receipt is given up after max_resends, and said so.
        second = speak(uplink, frames=4)
        assert wait_until(lambda: uplink.stats.unconfirmed == 1, 15)
        assert [s.utterance_id for s in worker.starts].count(second) == 3  # the first sending and 2 resends
        claimed.set()
        claimer.join()
        assert set(uplink.stats.resends) == {"no_receipt"} and uplink.stats.resends["no_receipt"] >= 3
    finally:
        uplink.stop(drain_seconds=1)

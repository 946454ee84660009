"""A raw MQTT 5 client that streams hand-built utterances as a device would (start,
then chunks to the worker that claimed it, then the end), for the streaming benchmarks;
and the /proc readings they report.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from contract import topics
from contract.messages import (
    AudioChunk,
    AudioFormat,
    EndReason,
    RecognitionResult,
    UtteranceClaimed,
    UtteranceEnd,
    UtteranceStart,
    decode_cloud_message,
    encode_json,
)


class Publisher:
    """A raw MQTT client that streams hand-built utterances."""

    def __init__(self, port: int, name: str) -> None:
        self.finals: dict[uuid.UUID, float] = {}
        self.claims: dict[uuid.UUID, str] = {}  # utterance -> the worker its audio goes to
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(1000)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        sock: Any = self.client.socket()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as every Earmark client
        self.client.loop_start()
        for i in range(64):
            self.client.subscribe(topics.results(f"bench-{i}"), qos=1)

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        result = decode_cloud_message(message.payload)
        if isinstance(result, UtteranceClaimed):
            self.claims.setdefault(result.utterance_id, result.worker_id)
        elif isinstance(result, RecognitionResult) and result.final:
            self.finals[result.utterance_id] = time.monotonic()

    def _worker(self, utterance_id: uuid.UUID) -> str:
        """The worker that claimed the utterance (as a device, its audio waits for the claim)."""
        deadline = time.monotonic() + 30
        while utterance_id not in self.claims:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no worker claimed {utterance_id}")
            time.sleep(0.001)
        return self.claims[utterance_id]

    def start(self, device: str, utterance_id: uuid.UUID, household: str | None = None) -> None:
        household = household or f"h-{device}"
        start = UtteranceStart(
            device_id=device, household_id=household, utterance_id=utterance_id, capture_started_at=datetime.now(UTC),
            audio_format=AudioFormat(), wake_word="alexa", wake_score=1.0, firmware_version="bench",
            review_allowed=False, consent_version=0,
        )  # fmt: skip
        self.client.publish(topics.utterance(device, utterance_id, topics.UtterancePart.START), encode_json(start), 1)

    def chunk(self, device: str, utterance_id: uuid.UUID, sequence: int, pcm: bytes, to: str | None = None) -> Any:
        """One chunk, to the worker that claimed the utterance (a flooder names one: `to`)."""
        worker = to or self._worker(utterance_id)
        topic = topics.utterance(device, utterance_id, topics.UtterancePart.AUDIO, worker)
        return self.client.publish(topic, AudioChunk(sequence=sequence, pcm=pcm).encode(), 1)

    def end(self, device: str, utterance_id: uuid.UUID, count: int) -> Any:
        end = UtteranceEnd(utterance_id=utterance_id, reason=EndReason.SILENCE, chunk_count=count)
        return self.client.publish(
            topics.utterance(device, utterance_id, topics.UtterancePart.END, self._worker(utterance_id)),
            encode_json(end),
            1,
        )

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) / 1024

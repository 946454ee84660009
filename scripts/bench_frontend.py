"""`python -m scripts.bench_frontend frontend`: CPU cost of the device front end against bare openWakeWord.

Reported, never asserted. Over the same audio (default 10 minutes: the bundled request
every 20 s between stretches of pink noise and silence), it measures CPU seconds per
audio second and per-frame latency for (a) bare `openwakeword.Model.predict` (the
reference, from the dev extra) and (b) the whole device front end (framing, pre-roll,
the wake-word runner, VAD, endpointing, events) over the same model files, each with
1 and with 5 wake words, in two ways:

- **back to back**: frames as fast as they go, alternating whole runs;
- **paced like a microphone** (`--paced-seconds`): one frame per 80 ms tick, each tick
  running both, in alternating order, each timed with this thread's CPU clock. A paced
  frame costs more than a back-to-back one (cold caches, a clock that slows between
  frames), and a live device is paced.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from contract.audio import FRAME_BYTES, FRAME_SAMPLES, SAMPLE_RATE_HZ
from contract.cli import OneLineParser, entry
from firmware.audio.framer import frames_of
from firmware.audio.source import SAMPLE_WAV
from firmware.audio.wav import read_wav
from firmware.events import FrontEndEvent
from firmware.frontend import FrontEnd, FrontEndSettings
from firmware.wake import (
    BUNDLED_WAKE_WORDS,
    WakeSettings,
    WakeWordDetector,
    WakeWordSpec,
    resolve_models,
)
from scripts.reference_wake import load_reference_model


def program_audio(minutes: float, seed: int = 1) -> bytes:
    """Minutes of audio with a wake word + request every 20 s, noise and silence between."""
    _info, request = read_wav(SAMPLE_WAV)
    rng = np.random.default_rng(seed)
    block_seconds = 20.0
    filler = int(block_seconds * SAMPLE_RATE_HZ) - len(request) // 2
    parts = []
    for _ in range(int(np.ceil(minutes * 60 / block_seconds))):
        noise = rng.standard_normal(filler // 2) * 300  # ~ -40 dBFS hiss
        parts += [request, noise.astype("<i2").tobytes(), bytes(filler - filler // 2) * 2]
    audio = b"".join(parts)[: int(minutes * 60 * SAMPLE_RATE_HZ) * 2]
    return audio[: len(audio) // FRAME_BYTES * FRAME_BYTES]


def _measure(step: Callable[[bytes], object], frames: list[bytes]) -> dict[str, float]:
    latencies = np.empty(len(frames))
    cpu_start = time.process_time()
    for i, frame in enumerate(frames):
        t0 = time.perf_counter()
        step(frame)
        latencies[i] = time.perf_counter() - t0
    cpu = time.process_time() - cpu_start
    audio_seconds = len(frames) * FRAME_SAMPLES / SAMPLE_RATE_HZ
    return {
        "audio_seconds": audio_seconds,
        "cpu_seconds": cpu,
        "cpu_per_audio_second": cpu / audio_seconds,
        "frame_p50_ms": float(np.percentile(latencies, 50) * 1000),
        "frame_p99_ms": float(np.percentile(latencies, 99) * 1000),
    }


def _median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    runs = sorted(runs, key=lambda r: r["cpu_per_audio_second"])
    return {**runs[len(runs) // 2], "runs_cpu_per_audio_second": [r["cpu_per_audio_second"] for r in runs]}  # type: ignore[dict-item]


def _bench_words(count: int, audio: bytes, frames: list[bytes], repeats: int) -> dict[str, dict[str, float]]:
    settings = WakeSettings(
        words=tuple(WakeWordSpec(model=w, detection="openwakeword") for w in BUNDLED_WAKE_WORDS[:count])
    )
    model = load_reference_model(resolve_models(settings))
    frontend = FrontEnd(FrontEndSettings(), WakeWordDetector(settings))
    utterances: list[FrontEndEvent] = []

    def keep_ready(event: FrontEndEvent) -> None:
        if event.type == "utterance_ready":
            utterances.append(event)

    def bare_step(frame: bytes) -> None:
        model.predict(np.frombuffer(frame, dtype="<i2"))

    frontend.subscribe(keep_ready)
    bare_runs, frontend_runs = [], []
    for _ in range(repeats):
        bare_runs.append(_measure(bare_step, frames))
        # Framing is part of the front end: it gets the byte stream, not ready frames.
        chunks = iter(frames_of(audio[i : i + 4096] for i in range(0, len(audio), 4096)))
        frontend_runs.append(_measure(lambda _frame: frontend.process(next(chunks)), frames))  # noqa: B023
    return {
        f"bare model, {count} word(s)": _median_run(bare_runs),
        f"front end, {count} word(s)": {**_median_run(frontend_runs), "utterances_per_run": len(utterances) / repeats},
    }


def _bench_paced(count: int, audio: bytes, frames: list[bytes]) -> dict[str, dict[str, float]]:
    settings = WakeSettings(
        words=tuple(WakeWordSpec(model=w, detection="openwakeword") for w in BUNDLED_WAKE_WORDS[:count])
    )
    model = load_reference_model(resolve_models(settings))
    frontend = FrontEnd(FrontEndSettings(), WakeWordDetector(settings))
    chunks = iter(frames_of(audio[i : i + 4096] for i in range(0, len(audio), 4096)))
    cpu = {"bare": 0.0, "front end": 0.0}
    started = time.monotonic()
    for index, frame in enumerate(frames):
        for name in ("bare", "front end") if index % 2 else ("front end", "bare"):
            t0 = time.thread_time()
            if name == "bare":
                model.predict(np.frombuffer(frame, dtype="<i2"))
            else:
                frontend.process(next(chunks))
            cpu[name] += time.thread_time() - t0
        ahead = (index + 1) * FRAME_SAMPLES / SAMPLE_RATE_HZ - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)
    audio_seconds = len(frames) * FRAME_SAMPLES / SAMPLE_RATE_HZ
    return {
        f"paced: {name}, {count} word(s)": {
            "audio_seconds": audio_seconds,
            "cpu_per_audio_second": seconds / audio_seconds,
        }
        for name, seconds in cpu.items()
    }


def bench_frontend(
    minutes: float, word_counts: Sequence[int], repeats: int, paced_seconds: float = 0.0
) -> dict[str, dict[str, float]]:
    """Run every configuration over the same audio, alternating bare model and front end."""
    audio = program_audio(minutes)
    frames = [audio[i : i + FRAME_BYTES] for i in range(0, len(audio), FRAME_BYTES)]
    results: dict[str, dict[str, float]] = {}
    for count in word_counts:
        results.update(_bench_words(count, audio, frames, repeats))
        if paced_seconds > 0:
            paced = frames[: int(paced_seconds * SAMPLE_RATE_HZ / FRAME_SAMPLES)]
            results.update(_bench_paced(count, audio[: len(paced) * FRAME_BYTES], paced))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m scripts.bench_frontend`."""
    return entry("python -m scripts.bench_frontend", _main, argv)


def _main(argv: list[str]) -> int:
    parser = OneLineParser(prog="python -m scripts.bench_frontend", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fe = sub.add_parser("frontend", help="front end vs bare openWakeWord CPU cost")
    fe.add_argument("--minutes", type=float, default=10.0)
    fe.add_argument("--repeats", type=int, default=3, help="runs per configuration; the median is reported")
    fe.add_argument("--paced-seconds", type=float, default=120.0, help="audio also run paced at 80 ms (0: skip)")
    fe.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    results = bench_frontend(args.minutes, (1, 5), args.repeats, args.paced_seconds)
    print(f"{'configuration':34} {'CPU-s/audio-s':>14} {'p50 ms':>8} {'p99 ms':>8}")
    for name, r in results.items():
        latency = f"{r['frame_p50_ms']:8.3f} {r['frame_p99_ms']:8.3f}" if "frame_p50_ms" in r else ""
        print(f"{name:34} {r['cpu_per_audio_second']:14.4f} {latency}")
    for count in (1, 5):
        for prefix, bare, ours in (
            ("back to back", "bare model", "front end"),
            ("paced", "paced: bare", "paced: front end"),
        ):
            if f"{bare}, {count} word(s)" in results:
                ratio = (
                    results[f"{ours}, {count} word(s)"]["cpu_per_audio_second"]
                    / results[f"{bare}, {count} word(s)"]["cpu_per_audio_second"]
                )
                print(f"{prefix}: front end / bare openWakeWord, {count} word(s): {ratio:.3f}x")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark satellite mode: latency at Home Assistant's side, and the speaker's CPU and
memory in Home Assistant mode versus Earmark-cloud mode.

The speaker is the real service (`scripts/satellite_driver.py`) with stdin as its
microphone, fed in real time ("Alexa, 지금 몇 시야", then a pause of 1-3 s, repeated).
Home Assistant's side is the `wyoming` client. Every time is taken on this machine's
monotonic clock: when the frame in question was written into the speaker's microphone,
and when the event arrived at Home Assistant's side.

- wake -> first audio chunk: from the frame on which the wake word fired (and from the
  end of the spoken wake word, which includes openWakeWord's own delay) to the first
  audio-chunk at Home Assistant.
- end of speech -> voice-stopped: from the last frame of speech to voice-stopped at Home
  Assistant; this includes the endpointer's silence window (shown separately).
- CPU (one core = 100 %) and peak RSS of the speaker process over the same requests, in
  both modes; cloud mode streams to a real mosquitto on loopback.

    python -m scripts.bench_satellite --requests 25 [--out reports/satellite_bench.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from wyoming.satellite import RunSatellite

from firmware.audio.wav import read_wav
from firmware.segmenter import SegmenterSettings
from scripts.satellite_rig import REPO, HomeAssistantSide, MicrophoneFeed, SpeakerProcess, free_port
from scripts.speech import Pcm, espeak, silence

_TICKS = os.sysconf("SC_CLK_TCK")


def _speech_end_seconds(pcm: Pcm, threshold: int = 300) -> float:
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > threshold)
    return float((loud[-1] + 1) / 16000) if len(loud) else 0.0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {
        "n": len(ordered),
        "p50_ms": round(1000 * statistics.median(ordered), 1),
        "p99_ms": round(1000 * at(0.99), 1),
        "max_ms": round(1000 * ordered[-1], 1),
    }


def _request() -> tuple[Pcm, float, float]:
    """The request, where the wake word ends in it, and where the speech ends."""
    _info, raw = read_wav(REPO / "tests" / "fixtures" / "alexa_only.wav")
    alexa = np.frombuffer(raw, dtype="<i2")
    command = espeak("지금 몇 시야", "ko", 140)
    pcm = np.concatenate([alexa, silence(0.3), command])
    return pcm, _speech_end_seconds(alexa), _speech_end_seconds(pcm)


async def _satellite_run(tmp: Path, requests: int, rng: random.Random) -> dict[str, Any]:
    pcm, wake_end_s, speech_end_s = _request()
    speaker = SpeakerProcess(tmp, None, zeroconf=True)
    room = MicrophoneFeed(speaker)
    ha = HomeAssistantSide(speaker.port)
    await ha.connect()
    await ha.send(RunSatellite())
    await asyncio.sleep(3.0)  # past start-up: the models' warm-up is not a request
    cpu_start, wall_start = _cpu_seconds(speaker.process.pid), time.monotonic()
    from_detection, from_wake_word, to_voice_stopped = [], [], []
    for index in range(requests):
        room.say(pcm)
        seen = await ha.until("audio-chunk", timeout_seconds=30)
        first_chunk_at = time.monotonic()
        detection = next(e for e in seen if e.type == "detection")
        await ha.until("voice-stopped", timeout_seconds=30)
        stopped_at = time.monotonic()
        await ha.until("audio-stop", timeout_seconds=30)
        start_frame = room.said_frames[index]  # recorded before its first frame was written
        from_detection.append(first_chunk_at - room.written_at(detection.data["timestamp"] / 1000))
        from_wake_word.append(first_chunk_at - room.written_at((start_frame * 1280 + wake_end_s * 16000) / 16000))
        to_voice_stopped.append(stopped_at - room.written_at((start_frame * 1280 + speech_end_s * 16000) / 16000))
        await asyncio.sleep(rng.uniform(1.0, 3.0))
    wall = time.monotonic() - wall_start
    cpu = _cpu_seconds(speaker.process.pid) - cpu_start
    rss = _peak_rss_mib(speaker.process.pid)
    await ha.close()
    room.stop()
    speaker.stop()
    silence_s = SegmenterSettings().silence_seconds
    return {
        "wake_to_first_chunk_from_detection": _percentiles(from_detection),
        "wake_to_first_chunk_from_end_of_wake_word": _percentiles(from_wake_word),
        "end_of_speech_to_voice_stopped": _percentiles(to_voice_stopped),
        "end_of_speech_to_voice_stopped_beyond_silence_window": _percentiles([v - silence_s for v in to_voice_stopped]),
        "silence_window_seconds": silence_s,
        "cpu_percent_of_one_core": round(100 * cpu / wall, 2),
        "peak_rss_mib": round(rss, 1),
        "seconds": round(wall, 1),
    }


def _cloud_run(tmp: Path, requests: int, rng: random.Random) -> dict[str, Any]:
    pcm, _, _ = _request()
    port = free_port()
    conf = tmp / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nuser root\n")
    broker = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        cloud = (
            f'[identity]\ndevice_id = "kitchen-1"\nhousehold_id = "h-42"\n[mqtt]\nhost = "127.0.0.1"\nport = {port}\n'
        )
        speaker = SpeakerProcess(tmp, None, mode="cloud", extra_toml=cloud)
        room = MicrophoneFeed(speaker)
        deadline = time.monotonic() + 120
        while not speaker.logged("connected") and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(3.0)
        cpu_start, wall_start = _cpu_seconds(speaker.process.pid), time.monotonic()
        for _ in range(requests):
            room.say(pcm)
            # the same timeline as the satellite run: the request, its endpoint, the pause
            time.sleep(len(pcm) / 16000 + SegmenterSettings().silence_seconds + rng.uniform(1.0, 3.0))
        wall = time.monotonic() - wall_start
        cpu = _cpu_seconds(speaker.process.pid) - cpu_start
        rss = _peak_rss_mib(speaker.process.pid)
        utterances = sum("wake word alexa" in line for line in speaker.log)
        room.stop()
        speaker.stop()
    finally:
        broker.terminate()
        broker.wait()
    return {
        "cpu_percent_of_one_core": round(100 * cpu / wall, 2),
        "peak_rss_mib": round(rss, 1),
        "seconds": round(wall, 1),
        "wake_words_heard": utterances,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=25)
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "satellite_bench.json")
    args = parser.parse_args()
    rng = random.Random(7)  # noqa: S311 - pauses between requests, not secrets
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "sat").mkdir()
        (Path(tmp) / "cloud").mkdir()
        satellite = asyncio.run(_satellite_run(Path(tmp) / "sat", args.requests, rng))
        cloud = _cloud_run(Path(tmp) / "cloud", args.requests, random.Random(7))  # noqa: S311
    report = {"requests": args.requests, "home_assistant_mode": satellite, "cloud_mode": cloud}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

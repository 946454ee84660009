"""Two-stage wake detection on the speaker (issue 27): microWakeWord listens, openWakeWord confirms."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from contract.audio import FRAME_SAMPLES
from firmware.errors import ModelLoadError
from firmware.micro_wake import bundled_micro_dir
from firmware.wake import FIRST_STAGE_CUTOFF, WakeDetection, WakeSettings, WakeWordDetector, WakeWordSpec
from tests.conftest import FIXTURES, Pcm, load_pcm


def detections(detector: WakeWordDetector, pcm: Pcm) -> list[WakeDetection]:
    detector.reset()
    padded = np.concatenate([pcm, np.zeros(8000, np.int16)])
    found = []
    for i in range(0, len(padded) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
        detection = detector.process(padded[i : i + FRAME_SAMPLES].tobytes())
        if detection is not None:
            found.append(detection)
    return found


def micro_dir() -> Path:
    shipped = bundled_micro_dir()
    assert shipped is not None, "pymicro-wakeword ships the first-stage models"
    return shipped


def test_by_default_a_word_with_a_micro_model_is_detected_in_two_stages() -> None:
    detector = WakeWordDetector(WakeSettings(words=(WakeWordSpec(model="alexa"), WakeWordSpec(model="hey_rhasspy"))))
    assert detector.two_stage_words == ("alexa",)  # no microWakeWord model for hey_rhasspy: openWakeWord alone
    found = detections(detector, load_pcm(FIXTURES / "alexa_only.wav"))
    assert [d.wake_word for d in found] == ["alexa"] and found[0].score >= 0.5  # openWakeWord's confirming score
    assert detections(detector, load_pcm(FIXTURES / "positives/hey_rhasspy_1.0.wav"))[0].wake_word == "hey_rhasspy"
    assert detections(detector, load_pcm(FIXTURES / "stop.wav")) == []


def test_only_openwakeword_alone_is_idle_between_first_stage_wakes() -> None:
    two_stage = WakeWordDetector(WakeSettings(words=(WakeWordSpec(model="alexa"),)))
    speech = load_pcm(FIXTURES / "stop.wav")
    two_stage.reset()
    for i in range(0, len(speech) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
        two_stage.process(speech[i : i + FRAME_SAMPLES].tobytes())
        assert two_stage.last_scores == {}  # openWakeWord ran no frame: microWakeWord heard nothing


def test_a_wake_the_second_model_does_not_hear_is_no_wake(tmp_path: Path) -> None:
    # A first stage that hears "alexa" in front of an openWakeWord "hey_jarvis": real models
    # that disagree, as two independently trained models do on a false wake.
    mine = tmp_path / "micro"
    mine.mkdir()
    shutil.copy(micro_dir() / "alexa.tflite", mine / "alexa.tflite")
    (mine / "hey_jarvis.json").write_text((micro_dir() / "alexa.json").read_text())
    alexa = np.concatenate([load_pcm(FIXTURES / "alexa_only.wav"), np.zeros(8000, np.int16)])
    mismatched = WakeWordDetector(WakeSettings(words=(WakeWordSpec(model="hey_jarvis"),), micro_model_dir=mine))
    assert mismatched.two_stage_words == ("hey_jarvis",)
    mismatched.reset()
    first_stage = []
    for i in range(0, len(alexa) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
        assert mismatched.process(alexa[i : i + FRAME_SAMPLES].tobytes()) is None
        first_stage.append(mismatched.first_stage_scores["hey_jarvis"])
    assert max(first_stage) > FIRST_STAGE_CUTOFF  # the first stage heard its word: openWakeWord refused it


def test_first_stage_models_are_found_or_the_error_says_how_to_fix_it(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    auto = WakeWordDetector(WakeSettings(words=(WakeWordSpec(model="alexa"),), micro_model_dir=empty))
    assert auto.two_stage_words == ()  # auto: openWakeWord alone when there is no first-stage model
    with pytest.raises(ModelLoadError, match=r"two-stage detection needs microWakeWord's alexa.json"):
        WakeWordDetector(
            WakeSettings(words=(WakeWordSpec(model="alexa", detection="two_stage"),), micro_model_dir=empty)
        )
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(micro_dir() / "alexa.json", broken / "alexa.json")
    (broken / "alexa.tflite").write_bytes(b"not a model" * 100)
    with pytest.raises(ModelLoadError, match=r"microWakeWord model .*alexa.json"):
        WakeWordDetector(WakeSettings(words=(WakeWordSpec(model="alexa"),), micro_model_dir=broken))
    alone = WakeWordDetector(WakeSettings(words=(WakeWordSpec(model="alexa", detection="openwakeword"),)))
    assert alone.two_stage_words == ()

"""Two-stage wake detection on the speaker (issue 27): microWakeWord listens, openWakeWord confirms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from contract.audio import FRAME_SAMPLES
from firmware.errors import ModelLoadError
from firmware.micro_wake import MicroWakeModel, micro_config
from firmware.two_stage import Confirmer
from firmware.wake import (
    FIRST_STAGE_CUTOFF,
    WakeDetection,
    WakeSettings,
    WakeWordDetector,
    WakeWordSpec,
    load_model,
    resolve_models,
)
from tests.conftest import (
    FIXTURES,
    Pcm,
    broken_micro_models,
    fooled_micro_models,
    load_pcm,
    shipped_micro_models,
)


def detections(detector: WakeWordDetector, pcm: Pcm) -> list[WakeDetection]:
    detector.reset()
    padded = np.concatenate([pcm, np.zeros(8000, np.int16)])
    found = []
    for i in range(0, len(padded) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
        detection = detector.process(padded[i : i + FRAME_SAMPLES].tobytes())
        if detection is not None:
            found.append(detection)
    return found


def test_by_default_a_word_with_a_micro_model_is_detected_in_two_stages() -> None:
    detector = WakeWordDetector(WakeSettings(words=(WakeWordSpec(model="alexa"), WakeWordSpec(model="hey_rhasspy"))))
    assert detector.two_stage_words == ("alexa",)  # no microWakeWord model for hey_rhasspy: openWakeWord alone
    found = detections(detector, load_pcm(FIXTURES / "alexa_only.wav"))
    assert [d.wake_word for d in found] == ["alexa"] and found[0].score >= 0.5  # openWakeWord's confirming score
    assert detections(detector, load_pcm(FIXTURES / "positives/hey_rhasspy_1.0.wav"))[0].wake_word == "hey_rhasspy"
    assert detections(detector, load_pcm(FIXTURES / "stop.wav")) == []


def test_a_single_word_is_confirmed_by_replaying_and_openwakeword_idles_otherwise() -> None:
    detector = WakeWordDetector(WakeSettings())  # the default: alexa, two stages
    speech = load_pcm(FIXTURES / "stop.wav")
    detector.reset()
    for i in range(0, len(speech) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
        detector.process(speech[i : i + FRAME_SAMPLES].tobytes())
        assert detector.last_scores == {}  # openWakeWord ran no frame: microWakeWord heard nothing
    found = detections(detector, load_pcm(FIXTURES / "alexa_only.wav"))
    assert [d.wake_word for d in found] == ["alexa"] and found[0].score >= 0.5


def test_reset_forgets_what_the_first_stage_heard() -> None:
    config = micro_config(shipped_micro_models(), "alexa")
    assert config is not None
    used, fresh = MicroWakeModel(config), MicroWakeModel(config)
    alexa = np.concatenate([load_pcm(FIXTURES / "alexa_only.wav"), np.zeros(8000, np.int16)])
    assert max(used.process(alexa[i : i + FRAME_SAMPLES]) for i in range(0, len(alexa) - 1279, FRAME_SAMPLES)) > 0.9
    used.reset()
    silence = np.zeros(FRAME_SAMPLES * 12, np.int16)
    after = [used.process(silence[i : i + FRAME_SAMPLES]) for i in range(0, len(silence), FRAME_SAMPLES)]
    assert after == [fresh.process(silence[i : i + FRAME_SAMPLES]) for i in range(0, len(silence), FRAME_SAMPLES)]
    assert max(after) < 0.1


def test_a_used_confirmation_is_never_replayed() -> None:
    resolved = resolve_models(WakeSettings())
    confirmer = Confirmer(load_model(resolved), 3.2, always_live=False)
    confirmer.reset(0)
    alexa = np.concatenate([np.zeros(16000, np.int16), load_pcm(FIXTURES / "alexa_only.wav")])
    alexa = alexa[: len(alexa) // FRAME_SAMPLES * FRAME_SAMPLES]
    for i in range(0, len(alexa), FRAME_SAMPLES):
        confirmer.push(alexa[i : i + FRAME_SAMPLES])
    since = confirmer.heard()
    assert (confirmer.best("alexa", 0.5, 2, since) or 0) > 0.9
    confirmer.use_up()  # e.g. heard while the speaker was busy: no wake, and used up
    for _ in range(12):  # ~1 s later the first stage hears something again
        confirmer.push(np.zeros(FRAME_SAMPLES, np.int16))
    assert confirmer.best("alexa", 0.5, 2, confirmer.heard()) is None


def test_a_first_stage_hearing_expires_when_openwakeword_alone_also_runs(tmp_path: Path) -> None:
    # hey_jarvis in two stages, its first stage fooled to hear "alexa"; hey_rhasspy keeps
    # openWakeWord running on every frame. The refused hearing must not stay open until
    # openWakeWord alone hears "hey jarvis" long after.
    mine = fooled_micro_models(tmp_path / "micro")
    words = (WakeWordSpec(model="hey_jarvis"), WakeWordSpec(model="hey_rhasspy"))
    detector = WakeWordDetector(WakeSettings(words=words, micro_model_dir=mine))
    audio = np.concatenate(
        [
            load_pcm(FIXTURES / "alexa_only.wav"),
            np.zeros(16000 * 5, np.int16),
            load_pcm(FIXTURES / "positives/hey_jarvis_1.0.wav"),
        ]
    )
    assert [d.wake_word for d in detections(detector, audio)] == []


def test_a_wake_the_second_model_does_not_hear_is_no_wake(tmp_path: Path) -> None:
    # A first stage that hears "alexa" in front of an openWakeWord "hey_jarvis".
    mine = fooled_micro_models(tmp_path / "micro")
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
    broken = broken_micro_models(tmp_path / "broken")
    with pytest.raises(ModelLoadError, match=r"microWakeWord model .*alexa.json"):
        WakeWordDetector(WakeSettings(words=(WakeWordSpec(model="alexa"),), micro_model_dir=broken))
    alone = WakeWordDetector(WakeSettings(words=(WakeWordSpec(model="alexa", detection="openwakeword"),)))
    assert alone.two_stage_words == ()

"""No wake word fires on minutes of everyday speech and noise (real models, real VAD)."""

from __future__ import annotations

import numpy as np
import pytest

from firmware.events import FrontEndEvent, WakeDetected
from firmware.frontend import FrontEnd, FrontEndSettings
from firmware.wake import BUNDLED_WAKE_WORDS, WakeSettings, WakeWordDetector, WakeWordSpec
from scripts.speech import NEGATIVE_SENTENCES, espeak, pink_noise, silence, white_noise
from tests.conftest import feed

VOICES = (("en-us", 150), ("en-gb", 170), ("en-us+f3", 140), ("en-us+m3", 185))


@pytest.fixture(scope="module")
def negative_audio() -> np.ndarray:
    """Over five minutes: every sentence in several espeak-ng voices, with noise beds."""
    rng = np.random.default_rng(11)
    parts: list[np.ndarray] = []
    for voice, wpm in VOICES:
        for sentence in NEGATIVE_SENTENCES:
            parts += [espeak(sentence, voice, wpm), silence(float(rng.uniform(0.2, 1.0)))]
    speech = np.concatenate(parts)
    noise = np.concatenate(
        [pink_noise(20.0, rng, rms=0.05), silence(1.0), white_noise(20.0, rng, rms=0.03), silence(1.0)]
    )
    return np.concatenate([noise, speech])


def test_enough_negative_audio(negative_audio: np.ndarray) -> None:
    assert len(negative_audio) / 16_000 >= 300


@pytest.fixture(scope="module")
def wakes_on_negatives(negative_audio: np.ndarray, all_words_detector: WakeWordDetector) -> list[WakeDetected]:
    """Every wake the default settings fire on the negatives, all five words enabled."""
    all_words_detector.reset()
    frontend = FrontEnd(FrontEndSettings(), all_words_detector)
    wakes: list[WakeDetected] = []

    def keep(event: FrontEndEvent) -> None:
        if isinstance(event, WakeDetected):
            wakes.append(event)

    frontend.subscribe(keep)
    feed(frontend, negative_audio)
    return wakes


@pytest.mark.parametrize("word", BUNDLED_WAKE_WORDS)
def test_no_wake_word_fires_on_negatives(word: str, wakes_on_negatives: list[WakeDetected]) -> None:
    fired = [(w.score, w.audio_time_seconds) for w in wakes_on_negatives if w.wake_word == word]
    assert fired == []


def test_hey_rhasspy_fires_on_its_known_confusable_without_its_stricter_default(
    negative_audio: np.ndarray, all_words_detector: WakeWordDetector
) -> None:
    """Keeps the reason for DEFAULT_PATIENCE_FRAMES visible: at the common patience of 2,
    espeak-ng en-gb "The shop on the corner sells fresh bread every day" wakes hey_rhasspy."""
    settings = WakeSettings(words=(WakeWordSpec(model="hey_rhasspy", patience_frames=2),))
    frontend = FrontEnd(FrontEndSettings(), WakeWordDetector(settings))
    wakes: list[WakeDetected] = []
    frontend.subscribe(lambda e: wakes.append(e) if isinstance(e, WakeDetected) else None)
    feed(frontend, negative_audio)
    assert len(wakes) >= 1

"""Noise suppression and gain on the microphone: off unless asked, and when asked, it works."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from contract.audio import FRAME_BYTES
from firmware.audio.noise import MicrophoneSettings, NoiseCleaner, NoiseSuppression, noise_cleaner
from firmware.settings import DeviceSettings


def test_nothing_is_done_to_the_microphone_by_default() -> None:
    assert DeviceSettings().microphone == MicrophoneSettings()
    assert noise_cleaner(MicrophoneSettings()) is None


def test_suppression_turns_a_steady_hiss_down_frame_by_frame() -> None:
    cleaner = noise_cleaner(MicrophoneSettings(noise_suppression=NoiseSuppression.HIGH))
    assert isinstance(cleaner, NoiseCleaner)
    hiss = np.random.default_rng(5).normal(0, 1_000, 40 * FRAME_BYTES // 2).astype("<i2").tobytes()
    cleaned = b"".join(cleaner.clean(hiss[at : at + FRAME_BYTES]) for at in range(0, len(hiss), FRAME_BYTES))
    assert len(cleaned) == len(hiss)
    tail = slice(len(hiss) // 4, None)  # once its noise estimate has settled (0.8 s in)
    before = np.frombuffer(hiss, dtype="<i2")[tail].astype(np.float64)
    after = np.frombuffer(cleaned, dtype="<i2")[tail].astype(np.float64)
    assert 10 * np.log10(np.mean(before**2) / np.mean(after**2)) > 10  # dB


def test_an_unknown_level_is_refused_by_name() -> None:
    with pytest.raises(ValidationError, match="noise_suppression"):
        DeviceSettings.model_validate({"microphone": {"noise_suppression": "maximum"}})

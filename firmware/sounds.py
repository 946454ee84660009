"""The speaker's own sounds, made from sine tones here: no third-party audio ships.

Each is 16 kHz mono S16_LE, short, and faded in and out so it never clicks. They are
made once at start-up (a few milliseconds) rather than stored as files.
"""

from __future__ import annotations

import enum

import numpy as np
import numpy.typing as npt

from contract.audio import SAMPLE_RATE_HZ

_FADE_SECONDS = 0.008


class Sound(enum.StrEnum):
    """What the speaker can say without words."""

    WAKE = "wake"  # the wake word was heard: speak now
    DONE = "done"  # the request is over (end of speech)
    ERROR = "error"  # the request cannot be served (no Home Assistant, an error reply)
    TIMER = "timer"  # a timer finished


# (frequency Hz, seconds) per note; 0 Hz is a rest.
_NOTES: dict[Sound, tuple[tuple[float, float], ...]] = {
    Sound.WAKE: ((660.0, 0.07), (880.0, 0.09)),
    Sound.DONE: ((880.0, 0.07), (660.0, 0.09)),
    Sound.ERROR: ((330.0, 0.12), (0.0, 0.06), (262.0, 0.18)),
    Sound.TIMER: ((988.0, 0.12), (0.0, 0.08), (988.0, 0.12), (0.0, 0.08), (988.0, 0.12), (0.0, 0.3)),
}


def _note(frequency_hz: float, seconds: float) -> npt.NDArray[np.float64]:
    count = round(seconds * SAMPLE_RATE_HZ)
    if frequency_hz == 0:
        return np.zeros(count)
    t = np.arange(count) / SAMPLE_RATE_HZ
    tone = np.sin(2 * np.pi * frequency_hz * t)
    fade = min(round(_FADE_SECONDS * SAMPLE_RATE_HZ), count // 2)
    ramp = np.linspace(0.0, 1.0, fade)
    tone[:fade] *= ramp
    tone[count - fade :] *= ramp[::-1]
    faded: npt.NDArray[np.float64] = tone
    return faded


def render(sound: Sound) -> bytes:
    """The sound as wire-format PCM at 0.4 of full scale (the player applies the volume)."""
    samples = np.concatenate([_note(f, s) for f, s in _NOTES[sound]]) * 0.4
    pcm: bytes = np.clip(np.round(samples * 32767), -32768, 32767).astype("<i2").tobytes()
    return pcm

"""A simulated room for the wake-word reports: far-field speech and a TV's music bed.

The room is the simplest impulse response that behaves like one: a direct path, a few
early reflections, and a tail of noise decaying to -60 dB over `rt60_seconds`, with the
talker's level lowered for distance. Measured rooms would be better; none ship in a
package reachable here, and this one is enough to show whether a design falls apart when
the word arrives smeared by reverberation.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from contract.audio import SAMPLE_RATE_HZ
from scripts.speech import Pcm


def impulse_response(
    rng: np.random.Generator, rt60_seconds: float = 0.5, direct_gain: float = 0.5
) -> npt.NDArray[np.float64]:
    """A room impulse response at 16 kHz (direct path, early reflections, an exponential tail)."""
    n = int(rt60_seconds * SAMPLE_RATE_HZ)
    t = np.arange(n) / SAMPLE_RATE_HZ
    response: npt.NDArray[np.float64] = rng.standard_normal(n) * np.exp(-6.9 * t / rt60_seconds) * 0.12  # -60 dB
    response[0] = direct_gain
    for delay_ms, gain in ((7, 0.3), (13, -0.22), (21, 0.17), (34, 0.12)):
        response[int(delay_ms * SAMPLE_RATE_HZ / 1000)] += gain
    return response


def room(pcm: Pcm, rng: np.random.Generator, rt60_seconds: float = 0.5) -> Pcm:
    """`pcm` as a microphone across a room would hear it."""
    response = impulse_response(rng, rt60_seconds)
    size = 1 << int(np.ceil(np.log2(len(pcm) + len(response))))
    wet = np.fft.irfft(np.fft.rfft(pcm.astype(np.float64), size) * np.fft.rfft(response, size), size)[: len(pcm)]
    return np.clip(wet, -32768, 32767).astype(np.int16)


def music_bed(seconds: float, rng: np.random.Generator, rms: float = 0.05) -> Pcm:
    """A TV's background music: chords of harmonics changing every half second, with a beat."""
    n = int(seconds * SAMPLE_RATE_HZ)
    t = np.arange(n) / SAMPLE_RATE_HZ
    out = np.zeros(n)
    step = SAMPLE_RATE_HZ // 2
    for start in range(0, n, step):
        stop = min(n, start + step)
        root = 110.0 * 2 ** (int(rng.integers(0, 12)) / 12)
        for ratio in (1.0, 1.26, 1.5, 2.0):
            for harmonic in (1, 2, 3):
                out[start:stop] += np.sin(2 * np.pi * root * ratio * harmonic * t[start:stop]) / harmonic
        beat = np.exp(-np.arange(stop - start) / (0.05 * SAMPLE_RATE_HZ))
        out[start:stop] += rng.standard_normal(stop - start) * beat * 0.8
    out *= rms * 32768 / (np.sqrt(np.mean(out**2)) + 1e-12)
    return np.clip(out, -32768, 32767).astype(np.int16)

"""Turn decoded samples of any rate and channel count into wire-format PCM."""

from __future__ import annotations

from math import gcd

import numpy as np
import numpy.typing as npt

from contract.audio import SAMPLE_RATE_HZ


def to_wire_pcm(samples: npt.NDArray[np.float64], sample_rate_hz: int) -> bytes:
    """Down-mix (frames x channels) float samples in [-1, 1] and resample to 16 kHz int16."""
    mono = samples.mean(axis=1) if samples.ndim == 2 else samples
    if sample_rate_hz != SAMPLE_RATE_HZ:
        # Imported here: scipy costs ~0.3 s at start-up and most inputs are already 16 kHz.
        from scipy.signal import resample_poly

        common = gcd(sample_rate_hz, SAMPLE_RATE_HZ)
        mono = resample_poly(mono, SAMPLE_RATE_HZ // common, sample_rate_hz // common)
    scaled = np.clip(np.round(mono * 32768.0), -32768, 32767)
    pcm: bytes = scaled.astype("<i2").tobytes()
    return pcm


class Resampler:
    """Any rate to 16 kHz, one block at a time, giving what resampling the whole signal
    at once gives (`resample_poly`): each block is filtered with enough of its neighbours
    on both sides that the filter never sees a block edge, and the edges' outputs are cut.
    """

    def __init__(self, sample_rate_hz: int) -> None:
        common = gcd(sample_rate_hz, SAMPLE_RATE_HZ)
        self._up, self._down = SAMPLE_RATE_HZ // common, sample_rate_hz // common
        # resample_poly's filter reaches 10 * max(up, down) taps of the upsampled signal to
        # each side; as input samples, rounded up to whole `down`s so outputs align.
        reach = -(-10 * max(self._up, self._down) // self._up) + 1
        self._pad = -(-reach // self._down) * self._down
        self._before = np.zeros(self._pad)  # what came before the pending samples (zeros at the start)
        self._pending = np.zeros(0)

    def feed(self, samples: npt.NDArray[np.float64], *, last: bool) -> npt.NDArray[np.float64]:
        """The 16 kHz samples that the input so far fixes (all the rest if `last`)."""
        from scipy.signal import resample_poly

        self._pending = np.concatenate([self._pending, samples])
        if last:
            ready = len(self._pending)
            after = np.zeros(self._pad)
        else:
            # Only whole `down`s whose right neighbours have arrived.
            ready = max(len(self._pending) - self._pad, 0) // self._down * self._down
            after = self._pending[ready : ready + self._pad]
        if ready == 0 and not last:
            return np.zeros(0)
        window = np.concatenate([self._before, self._pending[:ready], after])
        out = resample_poly(window, self._up, self._down)
        skip = self._pad * self._up // self._down
        count = -(-ready * self._up // self._down)
        kept: npt.NDArray[np.float64] = out[skip : skip + count]
        self._before = np.concatenate([self._before, self._pending[:ready]])[-self._pad :]
        self._pending = self._pending[ready:]
        return kept

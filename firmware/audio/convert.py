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

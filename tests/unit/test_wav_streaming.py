"""WAV input is read and converted block by block: the same audio as converting the
whole file at once, without ever holding the whole file decoded."""

from __future__ import annotations

import tracemalloc
import wave
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import resample_poly

from firmware.audio.convert import Resampler, to_wire_pcm
from firmware.audio.wav import WavFileSource


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_block_resampling_equals_resampling_the_whole_signal(rate: int) -> None:
    rng = np.random.default_rng(rate)
    signal = rng.standard_normal(int(3.3 * rate)) * 0.3
    whole = resample_poly(signal, *_ratio(rate))
    resampler = Resampler(rate)
    pieces, start = [], 0
    while start < len(signal):
        size = int(rng.integers(1, rate // 2))  # pieces of any size, most not a whole `down`
        piece = signal[start : start + size]
        start += size
        pieces.append(resampler.feed(piece, last=start >= len(signal)))
    streamed = np.concatenate(pieces)
    assert streamed.shape == whole.shape
    assert np.abs(streamed - whole).max() < 1e-9


def _ratio(rate: int) -> tuple[int, int]:
    from math import gcd

    common = gcd(rate, 16000)
    return 16000 // common, rate // common


def _write(path: Path, rate: int, channels: int, seconds: float) -> np.ndarray:
    rng = np.random.default_rng(7)
    t = np.arange(int(seconds * rate)) / rate
    left = 0.4 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(len(t))
    frames = np.stack([left, -left * 0.5][:channels], axis=1)
    pcm = np.clip(np.round(frames * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return pcm.astype(np.float64) / 32768.0


def test_a_44k_stereo_file_streams_to_what_converting_it_whole_gives(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    decoded = _write(path, 44100, 2, 25.0)
    streamed = b"".join(WavFileSource(path, block_seconds=4.0).blocks())
    whole = to_wire_pcm(decoded, 44100)
    assert len(streamed) == len(whole)
    diff = np.abs(np.frombuffer(streamed, "<i2").astype(int) - np.frombuffer(whole, "<i2").astype(int))
    assert diff.max() <= 1  # rounding of the last bit only


def test_the_first_frame_of_a_long_file_needs_a_block_not_the_file(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    _write(path, 48000, 2, 120.0)  # 23 MB on disk; decoded whole as float64, 92 MB
    tracemalloc.start()
    try:
        source = WavFileSource(path)
        first = next(iter(source.frames()))
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(first) == 2560
    assert peak < 30 * 2**20  # a 10 s block and its working copies, not the two minutes

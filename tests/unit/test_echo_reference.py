"""What the loudspeaker played, handed to the echo canceller: resampled without seams,
bounded, and skipped when nothing plays."""

from __future__ import annotations

import numpy as np

from contract.audio import FRAME_BYTES, SAMPLE_RATE_HZ
from firmware.audio.echo import EchoCanceller, EchoReference


def tone(seconds: float, rate_hz: int, hz: float = 440.0) -> bytes:
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    return (np.sin(2 * np.pi * hz * t) * 10_000).astype("<i2").tobytes()


def test_a_22050_hz_stream_in_uneven_slices_comes_out_as_one_seamless_16k_signal() -> None:
    reference = EchoReference(max_seconds=5.0)
    reference.begin(22_050, 1)
    played = tone(1.0, 22_050)
    for at, size in zip(range(0, len(played), 2 * 1_733), [1_733] * 20, strict=False):
        reference.played(played[at : at + 2 * size])
    taken = reference.take(SAMPLE_RATE_HZ)
    assert taken is not None
    expected = np.sin(2 * np.pi * 440.0 * np.arange(len(taken)) / SAMPLE_RATE_HZ) * 10_000
    ready = int(0.99 * SAMPLE_RATE_HZ)  # the last input sample's successors are not known yet
    assert np.max(np.abs(taken[:ready] - expected[:ready])) < 0.02 * 10_000


def test_stereo_is_mixed_down_and_16k_passes_unchanged() -> None:
    reference = EchoReference()
    reference.begin(SAMPLE_RATE_HZ, 2)
    left = np.arange(-800, 800, dtype=np.int16) * 10
    stereo = np.stack([left, left // 2], axis=1).astype("<i2").tobytes()
    reference.played(stereo)
    taken = reference.take(len(left))
    assert taken is not None
    mixed = (left.astype(np.float64) + left // 2) / 2
    assert np.max(np.abs(taken - mixed)) < 1


def test_what_is_not_taken_in_time_is_dropped_oldest_first() -> None:
    reference = EchoReference(max_seconds=0.1)
    reference.begin(SAMPLE_RATE_HZ, 1)
    reference.played(np.full(1_600, 1, dtype="<i2").tobytes())
    reference.played(np.full(800, 2, dtype="<i2").tobytes())
    assert reference.dropped_samples == 800
    taken = reference.take(1_600)
    assert taken is not None and list(taken[:800]) == [1] * 800 and list(taken[800:]) == [2] * 800
    assert reference.take(10) is None


def test_a_short_reference_is_padded_with_silence() -> None:
    reference = EchoReference()
    reference.begin(SAMPLE_RATE_HZ, 1)
    reference.played(np.full(100, 7, dtype="<i2").tobytes())
    taken = reference.take(160)
    assert taken is not None and list(taken) == [7] * 100 + [0] * 60


def test_the_canceller_leaves_the_microphone_alone_until_something_plays_and_after_its_tail() -> None:
    reference = EchoReference()
    canceller = EchoCanceller(reference, tail_seconds=0.16)
    frame = np.random.default_rng(1).integers(-2_000, 2_000, FRAME_BYTES // 2).astype("<i2").tobytes()
    assert canceller.clean(frame) == frame and canceller.frames_cleaned == 0

    reference.begin(SAMPLE_RATE_HZ, 1)
    reference.played(frame)
    cleaned = canceller.clean(frame)
    assert len(cleaned) == len(frame) and canceller.frames_cleaned == 1

    canceller.clean(frame)  # the echo's tail: still cleaned, against silence
    canceller.clean(frame)
    assert canceller.frames_cleaned == 3
    assert canceller.clean(frame) == frame and canceller.frames_cleaned == 3

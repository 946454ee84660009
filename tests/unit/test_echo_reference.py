"""What the loudspeaker played, on a timeline for the echo canceller: resampled without
seams, placed where it plays, bounded, and skipped when nothing plays."""

from __future__ import annotations

import numpy as np

from contract.audio import FRAME_BYTES, SAMPLE_RATE_HZ
from firmware.audio.echo import EchoCanceller, EchoReference


class Clock:
    def __init__(self) -> None:
        self.seconds = 100.0

    def __call__(self) -> float:
        return self.seconds


def tone(seconds: float, rate_hz: int, hz: float = 440.0) -> bytes:
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    return (np.sin(2 * np.pi * hz * t) * 10_000).astype("<i2").tobytes()


def at(seconds: float) -> int:
    return round(seconds * SAMPLE_RATE_HZ)


def test_a_22050_hz_stream_in_uneven_slices_comes_out_as_one_seamless_16k_signal() -> None:
    clock = Clock()
    reference = EchoReference(max_seconds=5.0, clock=clock)
    reference.begin(22_050, 1)
    played = tone(1.0, 22_050)
    for start in range(0, len(played), 2 * 1_733):  # handed over at once: each plays after the last
        reference.played(played[start : start + 2 * 1_733])
    taken = reference.take(at(100.0) + SAMPLE_RATE_HZ, SAMPLE_RATE_HZ)
    assert taken is not None
    expected = np.sin(2 * np.pi * 440.0 * np.arange(len(taken)) / SAMPLE_RATE_HZ) * 10_000
    ready = int(0.99 * SAMPLE_RATE_HZ)  # the last input sample's successors are not known yet
    assert np.max(np.abs(taken[:ready] - expected[:ready])) < 0.02 * 10_000


def test_stereo_is_mixed_down_and_16k_passes_unchanged() -> None:
    clock = Clock()
    reference = EchoReference(clock=clock)
    reference.begin(SAMPLE_RATE_HZ, 2)
    left = np.arange(-800, 800, dtype=np.int16) * 10
    reference.played(np.stack([left, left // 2], axis=1).astype("<i2").tobytes())
    taken = reference.take(at(100.0) + len(left), len(left))
    assert taken is not None
    mixed = (left.astype(np.float64) + left // 2) / 2
    assert np.max(np.abs(taken - mixed)) < 1


def test_each_slice_sits_where_it_plays_with_silence_where_nothing_did() -> None:
    clock = Clock()
    reference = EchoReference(clock=clock)
    reference.begin(SAMPLE_RATE_HZ, 1)
    reference.played(np.full(800, 1, dtype="<i2").tobytes())  # plays 100.00-100.05 s
    clock.seconds = 100.02
    reference.played(np.full(800, 2, dtype="<i2").tobytes())  # queued behind it: 100.05-100.10 s
    clock.seconds = 100.2
    reference.played(np.full(800, 3, dtype="<i2").tobytes())  # after a pause: 100.20-100.25 s
    taken = reference.take(at(100.25), at(0.25))
    assert taken is not None
    assert list(taken) == [1] * 800 + [2] * 800 + [0] * 1_600 + [3] * 800
    assert reference.take(at(100.35), at(0.1)) is None  # nothing played then


def test_what_ended_long_ago_is_forgotten() -> None:
    clock = Clock()
    reference = EchoReference(max_seconds=0.5, clock=clock)
    reference.begin(SAMPLE_RATE_HZ, 1)
    reference.played(np.full(800, 1, dtype="<i2").tobytes())
    clock.seconds = 101.0
    reference.played(np.full(800, 2, dtype="<i2").tobytes())
    assert reference.take(at(100.05), 800) is None


def test_the_canceller_leaves_the_microphone_alone_until_something_plays_and_after_its_tail() -> None:
    clock = Clock()
    reference = EchoReference(clock=clock)
    canceller = EchoCanceller(reference, tail_seconds=0.16)
    frame = np.random.default_rng(1).integers(-2_000, 2_000, FRAME_BYTES // 2).astype("<i2").tobytes()
    assert canceller.clean(frame) == frame and canceller.frames_cleaned == 0

    reference.begin(SAMPLE_RATE_HZ, 1)
    clock.seconds += 0.02
    reference.played(frame)  # plays over the next 80 ms
    for _ in range(2):
        clock.seconds += 0.08
        cleaned = canceller.clean(frame)
        assert len(cleaned) == len(frame)
    assert canceller.frames_cleaned == 2

    for _ in range(2):  # the echo's tail: still cleaned, against silence
        clock.seconds += 0.08
        canceller.clean(frame)
    assert canceller.frames_cleaned == 4
    clock.seconds += 0.08
    assert canceller.clean(frame) == frame and canceller.frames_cleaned == 4


def test_what_a_cut_stream_never_played_is_not_a_reference() -> None:
    clock = Clock()
    reference = EchoReference(clock=clock)
    reference.begin(SAMPLE_RATE_HZ, 1)
    reference.played(np.full(1_600, 1, dtype="<i2").tobytes())  # 100.00-100.10 s
    reference.played(np.full(1_600, 2, dtype="<i2").tobytes())  # queued: 100.10-100.20 s
    clock.seconds = 100.05  # cut here (a wake word): the next stream begins at once
    reference.begin(SAMPLE_RATE_HZ, 1)
    reference.played(np.full(800, 3, dtype="<i2").tobytes())
    taken = reference.take(at(100.2), at(0.2))
    assert taken is not None
    assert list(taken) == [1] * 800 + [3] * 800 + [0] * 1_600

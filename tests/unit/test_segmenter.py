"""The pure endpointing detector, driven by lists of booleans."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.segmenter import EndReason, SegmentEnd, Segmenter, SegmenterSettings, SpeechStart

STEP = 0.02  # 20 ms VAD frames


def run(pattern: list[bool], config: SegmenterSettings | None = None) -> list[tuple[int, object]]:
    """Feed the pattern; return (frame index, event) for every event."""
    segmenter = Segmenter(config or SegmenterSettings())
    events = []
    for index, is_speech in enumerate(pattern):
        event = segmenter.process(STEP, is_speech)
        if event is not None:
            events.append((index, event))
    return events


def frames(seconds: float, value: bool) -> list[bool]:
    return [value] * round(seconds / STEP)


def test_speech_then_silence_ends_after_the_silence_window() -> None:
    pattern = frames(0.3, False) + frames(1.5, True) + frames(2.0, False)
    events = run(pattern)
    assert [type(e) for _, e in events] == [SpeechStart, SegmentEnd]
    start, end = events[0][1], events[1][1]
    assert isinstance(start, SpeechStart) and start.offset_seconds == pytest.approx(0.3)
    assert isinstance(end, SegmentEnd) and end.reason is EndReason.SILENCE
    assert end.offset_seconds == pytest.approx(0.3 + 1.5 + 0.7)


def test_one_word_command_ends_within_the_silence_window() -> None:
    # "stop": ~0.35 s of speech right after the wake word.
    pattern = frames(0.2, False) + frames(0.36, True) + frames(3.0, False)
    end = run(pattern)[-1][1]
    assert isinstance(end, SegmentEnd) and end.reason is EndReason.SILENCE
    speech_end = 0.2 + 0.36
    assert speech_end + 0.7 - 1e-6 <= end.offset_seconds <= speech_end + 0.7 + STEP


def test_short_command_is_held_to_the_minimum_utterance() -> None:
    config = SegmenterSettings(min_utterance_seconds=1.5)
    pattern = frames(0.36, True) + frames(3.0, False)
    end = run(pattern, config)[-1][1]
    assert isinstance(end, SegmentEnd) and end.offset_seconds == pytest.approx(1.5, abs=STEP)


def test_speech_past_the_cap_ends_at_max_length() -> None:
    pattern = frames(20.0, True)
    events = run(pattern)
    end = events[-1][1]
    assert isinstance(end, SegmentEnd) and end.reason is EndReason.MAX_LENGTH
    assert end.offset_seconds == pytest.approx(15.0)


def test_no_speech_after_wake_times_out() -> None:
    events = run(frames(10.0, False))
    assert len(events) == 1
    end = events[0][1]
    assert isinstance(end, SegmentEnd) and end.reason is EndReason.NO_SPEECH
    assert end.offset_seconds == pytest.approx(4.0)


def test_vad_blips_in_silence_neither_start_speech_nor_hold_the_end() -> None:
    rng = random.Random(7)  # noqa: S311 - a repeatable pattern, not a secret
    # webrtcvad calls ~10 % of silence frames speech, in isolated frames and pairs.
    noisy_silence = [rng.random() < 0.12 for _ in range(round(6.0 / STEP))]
    no_speech = run(noisy_silence)
    assert [e.reason for _, e in no_speech if isinstance(e, SegmentEnd)] == [EndReason.NO_SPEECH]

    pattern = frames(1.0, True) + noisy_silence
    end = run(pattern)[-1][1]
    assert isinstance(end, SegmentEnd) and end.reason is EndReason.SILENCE
    # Within the silence window plus a few blips' worth, not at the 15 s cap.
    assert end.offset_seconds < 1.0 + 0.7 + 0.2


def test_a_pause_shorter_than_the_window_does_not_end_the_request() -> None:
    pattern = frames(0.8, True) + frames(0.5, False) + frames(0.8, True) + frames(1.0, False)
    events = run(pattern)
    ends = [e for _, e in events if isinstance(e, SegmentEnd)]
    assert len(ends) == 1 and ends[0].offset_seconds == pytest.approx(0.8 + 0.5 + 0.8 + 0.7)


def test_speech_resuming_at_the_edge_of_the_window_is_not_cut() -> None:
    # The pause reaches 0.66 s, then real speech: its first frames must not end it.
    pattern = frames(0.8, True) + frames(0.66, False) + frames(0.5, True) + frames(1.0, False)
    ends = [e for _, e in run(pattern) if isinstance(e, SegmentEnd)]
    assert ends[0].offset_seconds == pytest.approx(0.8 + 0.66 + 0.5 + 0.7)


def test_cancel_ends_once() -> None:
    segmenter = Segmenter(SegmenterSettings())
    segmenter.process(STEP, True)
    end = segmenter.cancel()
    assert end is not None and end.reason is EndReason.CANCELLED
    assert segmenter.cancel() is None
    assert segmenter.process(STEP, True) is None


def test_settings_reject_a_timeout_past_the_cap() -> None:
    with pytest.raises(ValueError, match="speech_timeout_seconds"):
        SegmenterSettings(speech_timeout_seconds=20.0, max_utterance_seconds=10.0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=1200))
def test_every_pattern_ends_by_the_cap_and_stays_ended(pattern: list[bool]) -> None:
    config = SegmenterSettings(max_utterance_seconds=10.0)
    events = run(pattern + [True] * round(10.0 / STEP), config)
    ends = [(i, e) for i, e in events if isinstance(e, SegmentEnd)]
    assert len(ends) == 1
    index, end = ends[0]
    assert end.offset_seconds <= 10.0 + 1e-6
    assert all(i <= index for i, _ in events)
    starts = [e for _, e in events if isinstance(e, SpeechStart)]
    assert len(starts) <= 1
    full = pattern + [True] * round(10.0 / STEP)
    if end.reason is EndReason.SILENCE:
        # Silence ends only after speech, and never on a speech frame.
        assert starts and not full[index]
    if end.reason is EndReason.NO_SPEECH:
        assert not starts

"""Echo cancellation: the microphone with the speaker's own sound taken out.

Without it a reply that says the wake word wakes the speaker (it hears itself), and a
reply's words reach the VAD and the uplink as if someone spoke. The player hands every
slice of a reply it is about to write to the loudspeaker to an `EchoReference`, which
places it (16 kHz mono) on a timeline where it will play; the audio thread takes the
stretch of that timeline each microphone frame covers, and WebRTC's AEC3 (pywebrtc-audio)
subtracts its echo before the wake word, the VAD and the uplink see the frame.

AEC3 finds the rest of the delay (output buffering plus the room) by itself, so the
pairing needs no calibration. What it needs is that the reference is never later than
its echo: a slice is handed over just before it is written, so before it can be heard.
While nothing has played for `tail_seconds` the canceller is skipped: the speaker is
silent almost all day, and that costs nothing.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from contract.audio import SAMPLE_RATE_HZ
from firmware.errors import ConfigError

Samples = npt.NDArray[np.int16]

# Frames behind the clock: up to a stall's worth is lateness to ride out, past it a gap.
_RESYNC_SAMPLES = SAMPLE_RATE_HZ
_LAG_WINDOW_SAMPLES = 2 * SAMPLE_RATE_HZ  # a lag every frame of this window kept is not lateness
_LAG_ALLOWED_SAMPLES = SAMPLE_RATE_HZ // 25  # 40 ms
_OFFSET_RATE = 0.05  # per frame: the offset is followed over ~1.6 s


class _LinearResampler:
    """Any rate to 16 kHz by linear interpolation, block by block without seams.

    Crude for listening, enough for a reference: the echo canceller models the room from
    it, and what interpolation adds above 4 kHz is little of a voice's energy. It keeps
    scipy (~20 MiB, ~0.3 s to import) out of the speaker's process.
    """

    def __init__(self, sample_rate_hz: int) -> None:
        self._step = sample_rate_hz / SAMPLE_RATE_HZ
        self._position = 0.0  # of the next output sample, in input samples from the block's start
        self._last = 0.0  # the previous block's last sample (index -1 of the next)

    def feed(self, block: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        if len(block) == 0:
            return block
        count = max(0, int(np.floor((len(block) - 1 - self._position) / self._step)) + 1)
        positions = self._position + self._step * np.arange(count)
        known = np.concatenate([[self._last], block])
        out: npt.NDArray[np.float64] = np.interp(positions + 1, np.arange(len(known)), known)
        self._position += self._step * count - len(block)
        self._last = float(block[-1])
        return out


class EchoReference:
    """What the loudspeaker plays, as 16 kHz mono on a timeline, for the audio thread to take.

    Each slice is placed where it will play: when it was handed over, or right after the
    slice before it if that has not finished (the output plays in order). The microphone
    side asks for the stretch of that timeline its frame covers, so the pairing holds
    whichever of the two threads runs late: counting samples instead would shift the
    reference later each time the player is just in time, until it trails its echo and
    cancels nothing. The output's buffering and the input's latency are the same for every
    slice: AEC3 finds them. Bounded: what ended `max_seconds` ago is forgotten.
    """

    def __init__(self, max_seconds: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock  # the one both threads read (a test's simulated room sets it)
        self._lock = threading.Lock()
        self._blocks: deque[tuple[int, Samples]] = deque()  # (first sample's position, samples)
        self._end = 0  # position where the last block ends
        self._max_samples = int(max_seconds * SAMPLE_RATE_HZ)
        self._resampler: _LinearResampler | None = None
        self._channels = 1

    def begin(self, sample_rate_hz: int, channels: int) -> None:
        """A stream in this format starts (player thread). What was placed after now
        belonged to a stream that was cut: it never played, and the new one starts now."""
        self._resampler = None if sample_rate_hz == SAMPLE_RATE_HZ else _LinearResampler(sample_rate_hz)
        self._channels = channels
        now = position(self.clock())
        with self._lock:
            while self._blocks and self._blocks[-1][0] >= now:
                self._blocks.pop()
            if self._blocks and (first := self._blocks[-1][0]) + len(self._blocks[-1][1]) > now:
                self._blocks[-1] = (first, self._blocks[-1][1][: now - first])
            self._end = min(self._end, now)

    def played(self, pcm: bytes) -> None:
        """16-bit PCM of the stream begun last, about to be written to the loudspeaker."""
        samples = np.frombuffer(pcm[: len(pcm) // (2 * self._channels) * 2 * self._channels], dtype="<i2")
        if self._channels > 1:
            samples = samples.reshape(-1, self._channels).mean(axis=1).astype(np.int16)
        if self._resampler is not None:
            resampled = self._resampler.feed(samples.astype(np.float64))
            samples = np.clip(np.round(resampled), -32768, 32767).astype(np.int16)
        if len(samples) == 0:
            return
        now = position(self.clock())
        with self._lock:
            start = max(now, self._end)
            self._blocks.append((start, samples))
            self._end = start + len(samples)
            while self._blocks and self._blocks[0][0] + len(self._blocks[0][1]) < now - self._max_samples:
                self._blocks.popleft()

    def take(self, end: int, sample_count: int) -> Samples | None:
        """What played over the `sample_count` samples ending at position `end` (silence
        where nothing did), or None if nothing did at all."""
        start = end - sample_count
        out: Samples | None = None
        with self._lock:
            for first, samples in self._blocks:
                lo, hi = max(first, start), min(first + len(samples), end)
                if lo < hi:
                    if out is None:
                        out = np.zeros(sample_count, dtype=np.int16)
                    out[lo - start : hi - start] = samples[lo - first : hi - first]
        return out


def position(seconds: float) -> int:
    """A moment on the reference's timeline, in samples."""
    return round(seconds * SAMPLE_RATE_HZ)


def webrtc_audio() -> Any:
    """WebRTC's audio processing (imported when first wanted: a speaker without a
    loudspeaker never loads it), or a ConfigError saying how to get it or do without."""
    try:
        import pywebrtc_audio
    except ImportError as err:
        raise ConfigError(
            "echo cancellation and noise suppression need pywebrtc-audio (pip install 'earmark[device]');"
            " without it set output.echo_cancellation = false and leave [microphone] at its defaults"
        ) from err
    return pywebrtc_audio


class EchoCanceller:
    """Cleans microphone frames of the echo of what `reference` says was played."""

    def __init__(self, reference: EchoReference, tail_seconds: float = 1.0) -> None:
        self._aec = webrtc_audio().EchoCanceller(sample_rate=SAMPLE_RATE_HZ, num_channels=1)
        self._reference = reference
        self._tail_samples = int(tail_seconds * SAMPLE_RATE_HZ)
        self._quiet_samples = self._tail_samples  # nothing played yet: skip from the start
        self._next_end: int | None = None  # where the next frame ends on the reference's timeline
        self._offset = 0.0  # the microphone's DC offset, a running mean
        self._least_lag = _RESYNC_SAMPLES  # of the frames in this window, behind the clock
        self._window = 0  # samples of it so far
        self.frames_cleaned = 0

    def _frame_end(self, count: int) -> int:
        """Where a frame taken now ends on the timeline.

        Frames are contiguous audio, so each is placed right after the one before, not by
        when the thread got to it: frames read in a burst after a stall still sit where
        they were heard. Never later than now (a frame cannot be taken before it was
        heard). A lag the frames keep for a whole window (the first frame was late; the
        input stopped, muted, then went on) is taken out at the window's end, and a long
        one at once: a reference too early for AEC3's reach cancels nothing either.
        """
        now = position(self._reference.clock())
        end = now if self._next_end is None else min(self._next_end, now)
        lag = now - end
        if lag > _RESYNC_SAMPLES:
            end, lag = now, 0
        self._least_lag = min(self._least_lag, lag)
        self._window += count
        if self._window >= _LAG_WINDOW_SAMPLES:
            if self._least_lag > _LAG_ALLOWED_SAMPLES:
                end += self._least_lag
            self._window, self._least_lag = 0, _RESYNC_SAMPLES
        self._next_end = end + count
        return end

    def gap(self) -> None:
        """No audio came (muted): the next frame is not contiguous with the last one."""
        self._next_end = None

    def clean(self, frame: bytes) -> bytes:
        """One frame of wire-format PCM (a whole number of 10 ms), its echo removed."""
        count = len(frame) // 2
        far = self._reference.take(self._frame_end(count), count)
        near = self._without_offset(np.frombuffer(frame, dtype="<i2"))
        if far is None:
            if self._quiet_samples >= self._tail_samples:
                return near.tobytes()  # nothing played for a while: no echo left to remove
            self._quiet_samples += count
            far = np.zeros(count, dtype=np.int16)
        else:
            self._quiet_samples = 0
        self.frames_cleaned += 1
        out: Samples = self._aec.process(near, far)
        return out.astype("<i2", copy=False).tobytes()

    def _without_offset(self, near: Samples) -> Samples:
        """The frame less the microphone's DC offset. AEC3 filters it out; taken out on both
        paths, switching the canceller on and off is no step the VAD could hear."""
        self._offset += (float(near.mean()) - self._offset) * _OFFSET_RATE
        if abs(self._offset) < 1.0:
            return near
        shifted = np.clip(near.astype(np.int32) - round(self._offset), -32768, 32767)
        return shifted.astype(np.int16)

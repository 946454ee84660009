"""Echo cancellation: the microphone with the speaker's own sound taken out.

Without it a reply that says the wake word wakes the speaker (it hears itself), its
sounds leak into a request, and a reply's words reach the VAD as if someone spoke. The
player hands every slice it is about to write to the loudspeaker to an `EchoReference`
(16 kHz mono); the audio thread takes as many reference samples as each microphone frame
holds, and WebRTC's AEC3 (pywebrtc-audio) subtracts their echo before the wake word, the
VAD and the uplink see the frame.

AEC3 finds the delay between what was written and what the microphone hears (output
buffering plus the room) by itself, so the pairing needs no calibration. What it needs
is that the reference is never later than its echo: a slice is handed over just before
it is written, so before it can be heard. While nothing has played for `tail_seconds`
the canceller is skipped: the speaker is silent almost all day, and that costs nothing.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np
import numpy.typing as npt

from contract.audio import SAMPLE_RATE_HZ
from firmware.errors import ConfigError

_LOGGER = logging.getLogger(__name__)

Samples = npt.NDArray[np.int16]


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
    """What the loudspeaker is about to play, as 16 kHz mono, for the audio thread to take.

    Bounded: what the microphone side has not taken within `max_seconds` (it is muted, or
    stalled) is dropped oldest first, since a stale reference matches no echo.
    """

    def __init__(self, max_seconds: float = 1.0) -> None:
        self._lock = threading.Lock()
        self._pending = np.zeros(0, dtype=np.int16)
        self._max_samples = int(max_seconds * SAMPLE_RATE_HZ)
        self._resampler: _LinearResampler | None = None
        self._channels = 1
        self.dropped_samples = 0

    def begin(self, sample_rate_hz: int, channels: int) -> None:
        """A stream in this format starts (player thread)."""
        self._resampler = None if sample_rate_hz == SAMPLE_RATE_HZ else _LinearResampler(sample_rate_hz)
        self._channels = channels

    def played(self, pcm: bytes) -> None:
        """16-bit PCM of the stream begun last, about to be written to the loudspeaker."""
        samples = np.frombuffer(pcm[: len(pcm) // (2 * self._channels) * 2 * self._channels], dtype="<i2")
        if self._channels > 1:
            samples = samples.reshape(-1, self._channels).mean(axis=1).astype(np.int16)
        if self._resampler is not None:
            resampled = self._resampler.feed(samples.astype(np.float64))
            samples = np.clip(np.round(resampled), -32768, 32767).astype(np.int16)
        with self._lock:
            pending = np.concatenate([self._pending, samples])
            excess = len(pending) - self._max_samples
            if excess > 0:
                self.dropped_samples += excess
                pending = pending[excess:]
            self._pending = pending

    def take(self, sample_count: int) -> Samples | None:
        """The next `sample_count` samples (zeros past what was played); None if nothing was."""
        with self._lock:
            if len(self._pending) == 0:
                return None
            taken, self._pending = self._pending[:sample_count], self._pending[sample_count:]
        if len(taken) < sample_count:
            taken = np.concatenate([taken, np.zeros(sample_count - len(taken), dtype=np.int16)])
        return taken


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
        self.frames_cleaned = 0

    def clean(self, frame: bytes) -> bytes:
        """One frame of wire-format PCM (a whole number of 10 ms), its echo removed."""
        count = len(frame) // 2
        far = self._reference.take(count)
        if far is None:
            if self._quiet_samples >= self._tail_samples:
                return frame  # nothing played for a while: no echo left to remove
            self._quiet_samples += count
            far = np.zeros(count, dtype=np.int16)
        else:
            self._quiet_samples = 0
        self.frames_cleaned += 1
        near = np.frombuffer(frame, dtype="<i2")
        out: Samples = self._aec.process(near, far)
        return out.astype("<i2", copy=False).tobytes()

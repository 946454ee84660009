"""The acoustic rig: the speaker in a simulated room, hearing its own replies.

The tests and `scripts.bench_echo` run the device's real front end on it (its echo
canceller, then its wake-word detector) instead of mocking either. What the loudspeaker
plays reaches the microphone through a room impulse response, at a gain and after the
output's buffering; a person may speak over it and household noise may sit under it.
The player's side is replayed as on the device: the reply at its own rate, handed to the
`EchoReference` in the player's 100 ms slices, one output buffer ahead of being heard;
the microphone's side in 80 ms frames, each taken one frame plus the input's latency
after its audio was captured.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from contract.audio import FRAME_SAMPLES, FRAME_SECONDS, SAMPLE_RATE_HZ
from firmware.audio.convert import to_wire_pcm
from firmware.audio.echo import EchoCanceller, EchoReference
from firmware.audio.output import SLICE_SECONDS
from firmware.wake import WakeWordDetector
from scripts.speech import Pcm, active_rms
from scripts.wake_rooms import impulse_response


@dataclass(frozen=True)
class Room:
    """Where the speaker stands and how its audio path is buffered."""

    echo_gain: float = 1.0  # the loudspeaker's direct path into the microphone, x the played signal
    rt60_seconds: float = 0.3
    output_buffer_seconds: float = 0.05  # written -> heard
    input_latency_seconds: float = 0.02  # captured -> in a frame the audio thread takes
    clipping: bool = False  # a small loudspeaker driven to its limit (tanh)
    # The audio thread stalls this long every so often (a slow model, the GC), then reads
    # the frames that waited in a burst.
    stall_every_seconds: float | None = None
    stall_seconds: float = 0.3


@dataclass(frozen=True)
class Reply:
    """What the speaker plays: 16-bit mono PCM at its own rate (espeak-ng's 22,050 Hz, say)."""

    pcm: bytes
    sample_rate_hz: int

    def at_16k(self) -> npt.NDArray[np.float64]:
        """The reply as the microphone's converter would sample it."""
        samples = np.frombuffer(self.pcm, dtype="<i2").astype(np.float64) / 32768.0
        return np.frombuffer(to_wire_pcm(samples, self.sample_rate_hz), dtype="<i2").astype(np.float64)


@dataclass
class Heard:
    """The microphone signal of one scene and the player's hand-overs into it."""

    mic: Pcm
    slices: list[tuple[float, bytes]]  # (when handed to the reference, seconds; PCM)
    sample_rate_hz: int
    echo: npt.NDArray[np.float64]  # the echo alone, at the microphone


def scene(
    reply: Reply,
    room: Room,
    rng: np.random.Generator,
    *,
    starts_seconds: float = 1.0,
    after_seconds: float = 1.5,
    talker: Pcm | None = None,
    talker_at_seconds: float = 0.0,
    talker_db: float = 0.0,
    noise: Pcm | None = None,
    noise_db: float = -10.0,
) -> Heard:
    """The speaker starts playing `reply` at `starts_seconds`; a talker (already as the
    microphone hears them) may speak at `talker_at_seconds`, `talker_db` relative to the
    echo, over `noise` at `noise_db` relative to the echo."""
    played = reply.at_16k()
    if room.clipping:
        played = np.tanh(played / 32768.0 * 2.0) / np.tanh(2.0) * 32768.0
    response = impulse_response(rng, room.rt60_seconds, room.echo_gain)
    echo = np.convolve(played, response)[: len(played)]
    heard_from = int((starts_seconds + room.output_buffer_seconds) * SAMPLE_RATE_HZ)
    talker_from = int(talker_at_seconds * SAMPLE_RATE_HZ)
    end = max(heard_from + len(echo), talker_from + (len(talker) if talker is not None else 0))
    total = -(-(end + int(after_seconds * SAMPLE_RATE_HZ)) // FRAME_SAMPLES) * FRAME_SAMPLES
    mic = np.zeros(total)
    mic[heard_from : heard_from + len(echo)] += echo
    echo_rms = active_rms(np.clip(echo, -32768, 32767).astype(np.int16))
    if talker is not None:
        voice = talker.astype(np.float64)
        voice *= echo_rms / (active_rms(talker) + 1e-9) * 10 ** (talker_db / 20)
        mic[talker_from : talker_from + len(voice)] += voice[: total - talker_from]
    if noise is not None:
        bed = np.tile(noise, -(-total // len(noise)))[:total].astype(np.float64)
        mic += bed * echo_rms / (np.sqrt(np.mean(bed**2)) + 1e-9) * 10 ** (noise_db / 20)
    slice_bytes = int(reply.sample_rate_hz * SLICE_SECONDS) * 2
    # A blocking write returns once its last sample is in the output's buffer, so the next
    # slice is handed over when what is ahead of it in the buffer takes one buffer to play.
    slices = [
        (starts_seconds + j * SLICE_SECONDS, reply.pcm[at : at + slice_bytes])
        for j, at in enumerate(range(0, len(reply.pcm), slice_bytes))
    ]
    return Heard(np.clip(mic, -32768, 32767).astype(np.int16), slices, reply.sample_rate_hz, echo)


def frames_through(heard: Heard, room: Room, *, cancel: bool, muted: tuple[float, float] | None = None) -> list[bytes]:
    """The microphone's frames as the front end gets them: with `cancel`, through the
    device's echo canceller, fed by the player's hand-overs as they happen. While `muted`
    (from, to seconds) nothing is captured: the canceller hears of the gap, as from the
    device's loop, and the frames are silence."""
    now = [0.0]  # the scene's clock, which both sides read, as the device's monotonic one
    reference = EchoReference(clock=lambda: now[0])
    canceller = EchoCanceller(reference) if cancel else None
    reference.begin(heard.sample_rate_hz, 1)
    pending = list(heard.slices)
    out = []
    for k in range(len(heard.mic) // FRAME_SAMPLES):
        taken_at = (k + 1) * FRAME_SECONDS + room.input_latency_seconds
        if room.stall_every_seconds is not None:
            stalled_from = taken_at // room.stall_every_seconds * room.stall_every_seconds
            taken_at = max(taken_at, stalled_from + room.stall_seconds)
        while pending and pending[0][0] <= taken_at:
            handed_at, pcm = pending.pop(0)
            now[0] = max(now[0], handed_at)
            reference.played(pcm)
        now[0] = taken_at
        frame = heard.mic[k * FRAME_SAMPLES : (k + 1) * FRAME_SAMPLES].tobytes()
        if muted is not None and muted[0] <= k * FRAME_SECONDS < muted[1]:
            if canceller is not None:
                canceller.gap()
            out.append(bytes(len(frame)))
            continue
        out.append(canceller.clean(frame) if canceller is not None else frame)
    return out


def wakes_in(detector: WakeWordDetector, frames: list[bytes]) -> list[float]:
    """When (seconds into the scene) the detector woke, listening throughout as during a
    reply (barge-in)."""
    detector.reset()
    return [
        round(k * FRAME_SECONDS, 2) for k, frame in enumerate(frames) if detector.process(frame, armed=True) is not None
    ]


def echo_return_loss_db(heard: Heard, frames: list[bytes], from_seconds: float, to_seconds: float) -> float:
    """How far the frames are below the microphone over a stretch (dB): the echo removed
    while only the loudspeaker plays."""
    cleaned = np.frombuffer(b"".join(frames), dtype="<i2").astype(np.float64)
    mic = heard.mic.astype(np.float64)
    span = slice(int(from_seconds * SAMPLE_RATE_HZ), int(to_seconds * SAMPLE_RATE_HZ))
    return float(10 * np.log10(np.mean(mic[span] ** 2) / (np.mean(cleaned[span] ** 2) + 1e-9)))

"""The speaker output, through PyAudio (PortAudio over ALSA on a Pi).

One thread owns the output device and plays, in order, what it is given: the device's
sounds and streamed replies (which start playing before their last chunk arrives). What
waits to be played is bounded in bytes; callers never block (a reply that outruns the
bound loses its tail, logged), and the end of a stream is never dropped, so whoever
waits for "played" hears back. A device with no output at all still runs: `available`
is False and the satellite asks Home Assistant for no spoken reply rather than pretend
it played one.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from contract.audio import CHANNELS, SAMPLE_RATE_HZ, SAMPLE_WIDTH_BYTES
from firmware.audio.echo import EchoReference
from firmware.errors import AudioInputError, AudioOutputError

if TYPE_CHECKING:
    import pyaudio

_LOGGER = logging.getLogger(__name__)

MAX_QUEUED_BYTES = 4 * 1024 * 1024  # 2 min of 16 kHz mono, 22 s of 48 kHz stereo
_MAX_QUEUED_ITEMS = 4096
SLICE_SECONDS = 0.1  # writes are this long at most, so a cut takes effect within one


@dataclass(frozen=True)
class Begin:
    """A stream of 16-bit PCM in this format follows (checked by `checked`); `on_started`
    runs when its first sample goes to the device."""

    sample_rate_hz: int
    sample_width_bytes: int
    channels: int
    on_started: Callable[[], None] | None = None
    # Replies are told to the echo canceller; the short sounds are not: AEC3 also silences
    # whoever talks while they play, and people talk right over the wake chime.
    cancel_echo: bool = True

    def checked(self) -> Begin:
        """This format, or ValueError if the device will not play it (values come from peers)."""
        for name, value, allowed in (
            ("rate", self.sample_rate_hz, range(8000, 48001)),
            ("width", self.sample_width_bytes, (2,)),
            ("channels", self.channels, (1, 2)),
        ):
            if type(value) is not int or value not in allowed:
                raise ValueError(f"unsupported audio {name} {value!r}")
        return self


@dataclass(frozen=True)
class End:
    """The stream is over; `on_played` runs once its last sample has been played."""

    on_played: Callable[[], None] | None


_Item = Begin | bytes | End | None


class Player:
    """Plays PCM streams on one output device, one after another."""

    def __init__(self, selector: str | None, volume: float = 1.0, reference: EchoReference | None = None) -> None:
        self._volume = volume
        self._reference = reference  # told what is played, for the echo canceller
        self._cancel_echo = True
        self._queue: queue.Queue[_Item] = queue.Queue()
        self._queued_bytes = 0
        self._queued_lock = threading.Lock()
        self._cut = threading.Event()
        self._on_started: Callable[[], None] | None = None
        self._pa: pyaudio.PyAudio | None = None
        self._device_index: int | None = None
        self.device_name = ""
        self._width_bytes = SAMPLE_WIDTH_BYTES
        self._slice_bytes = int(SAMPLE_RATE_HZ * SLICE_SECONDS) * SAMPLE_WIDTH_BYTES
        try:
            self._open(selector)
        except AudioOutputError as err:
            if selector:
                raise  # a speaker the user named and we cannot use is an error to fix
            _LOGGER.warning("no sound output (%s): sounds and spoken replies are off", err)
        self._thread = threading.Thread(target=self._run, name="speaker-output", daemon=True)
        self._thread.start()

    @property
    def available(self) -> bool:
        """True when there is an output device to play on."""
        return self._device_index is not None

    def _open(self, selector: str | None) -> None:
        from firmware.audio.mic import choose_device, devices_of, open_pyaudio

        try:
            pa = open_pyaudio()
        except AudioInputError as err:
            raise AudioOutputError(err.problem) from err
        try:
            devices = devices_of(pa, "maxOutputChannels")
            device = choose_device(devices, selector, kind="output")
            if not selector:
                # PortAudio's default output is ALSA's `default`; the first device listed is
                # raw hardware (HDMI, the headphone jack) that may refuse 16 kHz mono.
                with contextlib.suppress(OSError):
                    default = int(pa.get_default_output_device_info()["index"])
                    device = next((d for d in devices if d.index == default), device)
        except AudioInputError as err:
            pa.terminate()
            raise AudioOutputError(str(err)) from err
        self._pa, self._device_index, self.device_name = pa, device.index, device.name
        _LOGGER.info("playing on %s (index %d)", device.name, device.index)

    @property
    def volume(self) -> float:
        """Loudness, 0-1, applied to everything played from now on."""
        return self._volume

    @volume.setter
    def volume(self, value: float) -> None:
        self._volume = min(max(value, 0.0), 1.0)

    def play(self, pcm: bytes, on_played: Callable[[], None] | None = None) -> None:
        """Queue one whole piece of wire-format PCM (16 kHz mono S16_LE)."""
        self.begin(Begin(SAMPLE_RATE_HZ, SAMPLE_WIDTH_BYTES, CHANNELS, cancel_echo=False))
        self.write(pcm)
        self.end(on_played)

    def begin(self, fmt: Begin) -> None:
        """Start a stream (ValueError for a format the device will not play)."""
        self._put(fmt.checked())

    def write(self, pcm: bytes) -> None:
        """Add audio to the stream begun last; past the byte bound it is dropped, logged."""
        if not pcm:
            return
        with self._queued_lock:
            if self._queued_bytes + len(pcm) > MAX_QUEUED_BYTES or self._queue.qsize() >= _MAX_QUEUED_ITEMS:
                _LOGGER.warning("sound output is %d bytes behind: dropping audio", self._queued_bytes)
                return
            self._queued_bytes += len(pcm)
        self._put(pcm)

    def end(self, on_played: Callable[[], None] | None = None) -> None:
        """Close the stream begun last."""
        if self._queue.qsize() >= _MAX_QUEUED_ITEMS and on_played is not None:
            on_played()  # a peer flooding starts and stops: answered now rather than queued
            return
        self._put(End(on_played))

    def stop(self) -> None:
        """Drop everything queued and cut the stream playing now (e.g. a new request)."""
        self._cut.set()
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is None:
                self._queue.put_nowait(None)
                return
            self._done_with(item)
            if isinstance(item, End) and item.on_played is not None:
                item.on_played()  # answered even when cut: a waiting peer must not hang

    def close(self) -> None:
        """Stop the thread and release the device."""
        self.stop()
        self._queue.put_nowait(None)
        self._thread.join(timeout=5.0)
        if self._pa is not None and not self._thread.is_alive():
            self._pa.terminate()  # never under a thread still inside PortAudio

    def _put(self, item: _Item) -> None:
        self._queue.put_nowait(item)

    def _done_with(self, item: _Item) -> None:
        if isinstance(item, bytes):
            with self._queued_lock:
                self._queued_bytes -= len(item)

    def _run(self) -> None:
        stream: Any = None
        while True:
            item = self._queue.get()
            if item is None:
                break
            self._done_with(item)
            try:
                stream = self._handle(item, stream)
            except Exception:
                # A device error, or a format PortAudio refuses: this stream is lost, the
                # player is not, and whoever waits for "played" is still answered.
                _LOGGER.exception("sound output failed")
                self._close_stream(stream, abort=True)
                stream = None
                if isinstance(item, End) and item.on_played is not None:
                    item.on_played()
        self._close_stream(stream, abort=True)

    def _handle(self, item: _Item, stream: Any) -> Any:
        if isinstance(item, Begin):
            self._cut.clear()
            self._close_stream(stream)
            self._on_started = item.on_started
            return self._open_stream(item)
        if isinstance(item, End):
            self._close_stream(stream, abort=self._cut.is_set())
            if item.on_played is not None:
                item.on_played()
            return None
        if self._cut.is_set():
            # What was queued before stop() belonged to a moment that has passed.
            self._close_stream(stream, abort=True)
            return None
        if stream is not None and isinstance(item, bytes):
            if self._on_started is not None:
                started, self._on_started = self._on_started, None
                started()
            pcm = self._scaled(item)
            for start in range(0, len(pcm), self._slice_bytes):
                if self._cut.is_set():
                    break
                piece = pcm[start : start + self._slice_bytes]
                if self._reference is not None and self._cancel_echo:
                    self._reference.played(piece)  # before the write: never later than its echo
                stream.write(piece)
        return stream

    def _open_stream(self, fmt: Begin) -> Any:
        if self._pa is None:
            return None
        stream = self._pa.open(
            format=self._pa.get_format_from_width(fmt.sample_width_bytes),
            channels=fmt.channels,
            rate=fmt.sample_rate_hz,
            output=True,
            output_device_index=self._device_index,
        )
        self._width_bytes = fmt.sample_width_bytes
        self._cancel_echo = fmt.cancel_echo
        if self._reference is not None:
            self._reference.begin(fmt.sample_rate_hz, fmt.channels)  # also forgets a cut stream's rest
        frame_bytes = fmt.sample_width_bytes * fmt.channels
        self._slice_bytes = max(frame_bytes, int(fmt.sample_rate_hz * SLICE_SECONDS) * frame_bytes)
        return stream

    def _scaled(self, pcm: bytes) -> bytes:
        if self._volume >= 1.0 or self._width_bytes != 2:
            return pcm
        samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float32) * self._volume
        return samples.astype("<i2").tobytes()

    def _close_stream(self, stream: Any, *, abort: bool = False) -> None:
        if stream is not None:
            with contextlib.suppress(OSError):
                if abort:
                    stream.abort_stream()  # now: what is buffered is not wanted any more
                else:
                    stream.stop_stream()  # blocks until what was written has been played
                stream.close()

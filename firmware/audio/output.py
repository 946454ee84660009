"""The speaker output, through PyAudio (PortAudio over ALSA on a Pi).

One thread owns the output device and plays, in order, what it is given: the device's
sounds and streamed replies (which start playing before their last chunk arrives). The
queue is bounded; callers never block on it (a reply that outruns it loses its tail,
logged). A device with no output at all still runs: `available` is False and the
satellite asks Home Assistant for no spoken reply rather than pretend it played one.
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
from firmware.errors import AudioInputError, AudioOutputError

if TYPE_CHECKING:
    import pyaudio

_LOGGER = logging.getLogger(__name__)

_QUEUE_ITEMS = 4096  # ~4 minutes of Home Assistant's 1024-sample TTS chunks at 22 kHz


@dataclass(frozen=True)
class Begin:
    """A stream of PCM in this format follows."""

    sample_rate_hz: int
    sample_width_bytes: int
    channels: int


@dataclass(frozen=True)
class End:
    """The stream is over; `on_played` runs once its last sample has been played."""

    on_played: Callable[[], None] | None


_Item = Begin | bytes | End | None


class Player:
    """Plays PCM streams on one output device, one after another."""

    def __init__(self, selector: str | None, volume: float = 1.0) -> None:
        self._volume = volume
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=_QUEUE_ITEMS)
        self._cut = threading.Event()
        self._pa: pyaudio.PyAudio | None = None
        self._device_index: int | None = None
        self.device_name = ""
        self._width_bytes = SAMPLE_WIDTH_BYTES
        try:
            self._open(selector)
        except AudioOutputError as err:
            if selector:
                raise  # a speaker the user named and we cannot use is an error to fix
            _LOGGER.warning("no sound output (%s): sounds and spoken replies are off", err)
        self.playing = threading.Event()
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
            device = choose_device(devices_of(pa, "maxOutputChannels"), selector, kind="output")
        except AudioInputError as err:
            pa.terminate()
            raise AudioOutputError(str(err)) from err
        self._pa, self._device_index, self.device_name = pa, device.index, device.name
        _LOGGER.info("playing on %s (index %d)", device.name, device.index)

    def play(self, pcm: bytes, on_played: Callable[[], None] | None = None) -> None:
        """Queue one whole piece of wire-format PCM (16 kHz mono S16_LE)."""
        self.begin(Begin(SAMPLE_RATE_HZ, SAMPLE_WIDTH_BYTES, CHANNELS))
        self.write(pcm)
        self.end(on_played)

    def begin(self, fmt: Begin) -> None:
        """Start a stream."""
        self._put(fmt)

    def write(self, pcm: bytes) -> None:
        """Add audio to the stream begun last."""
        if pcm:
            self._put(pcm)

    def end(self, on_played: Callable[[], None] | None = None) -> None:
        """Close the stream begun last."""
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
            if isinstance(item, End) and item.on_played is not None:
                item.on_played()  # answered even when cut: a waiting peer must not hang

    def close(self) -> None:
        """Stop the thread and release the device."""
        self.stop()
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=1.0)
        self._thread.join(timeout=5.0)
        if self._pa is not None:
            self._pa.terminate()

    def _put(self, item: _Item) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            _LOGGER.warning("sound output queue full: dropping audio")

    def _run(self) -> None:
        stream: Any = None
        while True:
            item = self._queue.get()
            if item is None:
                break
            try:
                stream = self._handle(item, stream)
            except OSError:
                _LOGGER.exception("sound output failed")
                self._close_stream(stream)
                stream = None
        self._close_stream(stream)

    def _handle(self, item: _Item, stream: Any) -> Any:
        if isinstance(item, Begin):
            self._cut.clear()
            self._close_stream(stream)
            self.playing.set()
            return self._open_stream(item)
        if isinstance(item, End):
            self._close_stream(stream)
            if item.on_played is not None:
                item.on_played()
            return None
        if self._cut.is_set():
            # What was queued before stop() belonged to a moment that has passed.
            self._close_stream(stream)
            return None
        if stream is not None and isinstance(item, bytes):
            stream.write(self._scaled(item))
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
        return stream

    def _scaled(self, pcm: bytes) -> bytes:
        if self._volume >= 1.0 or self._width_bytes != 2:
            return pcm
        samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float32) * self._volume
        return samples.astype("<i2").tobytes()

    def _close_stream(self, stream: Any) -> None:
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.stop_stream()  # blocks until what was written has been played
                stream.close()
        self.playing.clear()

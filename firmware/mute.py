"""Mute: audio stops at the source, and the setting survives a restart.

While muted no frame is read from the microphone (its stream is stopped), so nothing
reaches the wake word, the VAD or the network. The state is kept in a small file so a
power cut does not silently unmute a speaker the household muted.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

from firmware.state_file import write_atomically

_LOGGER = logging.getLogger(__name__)


@runtime_checkable
class Pausable(Protocol):
    """A source that can stop capturing (the microphone)."""

    def pause(self) -> None:
        """Stop capturing."""
        ...

    def resume(self) -> None:
        """Capture again."""
        ...


class MuteState:
    """The persisted mute switch; listeners hear every change."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._listeners: list[Callable[[bool], None]] = []
        try:
            self._muted = bool(json.loads(path.read_text())["muted"])
        except FileNotFoundError:
            self._muted = False
        except (ValueError, KeyError, TypeError):
            # A damaged file errs on the side of privacy.
            _LOGGER.warning("unreadable mute state %s; staying muted", path)
            self._muted = True

    @property
    def muted(self) -> bool:
        """Whether the device is muted."""
        return self._muted

    def subscribe(self, listener: Callable[[bool], None]) -> None:
        """Call `listener(muted)` on every change."""
        self._listeners.append(listener)

    def set(self, muted: bool) -> None:
        """Mute or unmute, persist first, then tell the listeners."""
        with self._lock:
            if muted == self._muted:
                return
            write_atomically(self._path, json.dumps({"muted": muted}))
            self._muted = muted
        _LOGGER.info("muted" if muted else "unmuted")
        for listener in self._listeners:
            listener(muted)

    def toggle(self) -> None:
        """Flip the switch (the mute button)."""
        self.set(not self._muted)


def gated(frames: Iterator[bytes], mute: MuteState, source: object | None = None) -> Iterator[bytes]:
    """Frames from a source, none while muted; a pausable source stops capturing meanwhile.

    While muted it yields empty heartbeats (b"", no audio) so the main loop keeps
    pinging the systemd watchdog.
    """
    if isinstance(source, Pausable):
        pausable = source
        mute.subscribe(lambda muted: pausable.pause() if muted else pausable.resume())
        if mute.muted:
            pausable.pause()
    for frame in frames:
        yield b"" if mute.muted else frame

"""The device's one state enum and its only transition method."""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable

from firmware.errors import IllegalTransition

_LOGGER = logging.getLogger(__name__)


class DeviceState(enum.StrEnum):
    """What the device is doing."""

    IDLE = "idle"  # listening for the wake word only; nothing leaves the device
    LISTENING = "listening"  # wake word heard: capturing (and later streaming) the request
    FINISHING = "finishing"  # request over: handing the utterance to its consumers
    MUTED = "muted"  # microphone audio is dropped at the source


_ALLOWED: dict[DeviceState, frozenset[DeviceState]] = {
    DeviceState.IDLE: frozenset({DeviceState.LISTENING, DeviceState.MUTED}),
    DeviceState.LISTENING: frozenset({DeviceState.FINISHING, DeviceState.MUTED}),
    DeviceState.FINISHING: frozenset({DeviceState.IDLE, DeviceState.MUTED}),
    DeviceState.MUTED: frozenset({DeviceState.IDLE}),
}


class StateMachine:
    """Holds the state; `set_state` is the one way to change it."""

    def __init__(self, on_change: Callable[[DeviceState, DeviceState], None] | None = None) -> None:
        self._state = DeviceState.IDLE
        self._on_change = on_change

    @property
    def state(self) -> DeviceState:
        """The current state."""
        return self._state

    def set_state(self, new: DeviceState) -> None:
        """Move to `new`, or raise IllegalTransition if the move is not allowed."""
        if new not in _ALLOWED[self._state]:
            raise IllegalTransition(self._state, new)
        old, self._state = self._state, new
        _LOGGER.debug("%s -> %s", old, new)
        if self._on_change is not None:
            self._on_change(old, new)

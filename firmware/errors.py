"""The device's coded errors; every one reaches the user as one line."""

from __future__ import annotations

from contract.config import ConfigError
from contract.errors import EarmarkError

__all__ = [
    "AssistantError",
    "AudioInputError",
    "AudioOutputError",
    "ConfigError",
    "FirmwareError",
    "IllegalTransition",
    "ModelLoadError",
    "SatelliteError",
]


class FirmwareError(EarmarkError):
    """Base of all device-side errors."""

    code = "firmware_error"


class AudioInputError(FirmwareError):
    """An audio input (file, stdin, microphone) cannot be used."""

    code = "audio_input"

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem


class AudioOutputError(FirmwareError):
    """The speaker output (sounds, spoken replies) cannot be used."""

    code = "audio_output"


class SatelliteError(FirmwareError):
    """The Home Assistant satellite server cannot start (e.g. its port is taken)."""

    code = "satellite"


class AssistantError(FirmwareError):
    """The assistant cannot start: bad sentence files, or no voice to speak with."""

    code = "assistant"


class ModelLoadError(FirmwareError):
    """A wake-word model or its runtime cannot be loaded."""

    code = "model_load"


class IllegalTransition(FirmwareError):
    """The device state machine was asked for a move it does not allow."""

    code = "illegal_transition"

    def __init__(self, current: object, requested: object) -> None:
        super().__init__(f"illegal state transition {current} -> {requested}")
        self.current = current
        self.requested = requested

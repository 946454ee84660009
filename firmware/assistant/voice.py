"""Text -> speech on the device: espeak-ng (Debian's package) by default, Piper if installed.

Each yields 16-bit mono PCM as it is made, so the speaker starts talking before the
whole reply is synthesized. The text never reaches a command line (it goes to stdin),
and is never logged above DEBUG.
"""

from __future__ import annotations

import logging
import os
import shutil
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from firmware.assistant.settings import AssistantSettings, Language, VoiceEngine
from firmware.errors import AssistantError

_LOGGER = logging.getLogger(__name__)
_ESPEAK_VOICES = {Language.ENGLISH: "en-us", Language.KOREAN: "ko"}
_WAV_HEADER_BYTES = 44  # espeak-ng --stdout writes the canonical header, then streams
_READ_BYTES = 4096


@dataclass(frozen=True)
class Speech:
    """PCM as it is synthesized."""

    sample_rate_hz: int
    chunks: Iterator[bytes]


class Voice(Protocol):
    """Anything that can say a text."""

    def speak(self, text: str) -> Speech:
        """Start synthesizing `text`."""
        ...


class EspeakVoice:
    """espeak-ng in a subprocess per reply (~10 ms to start; it streams its WAV)."""

    def __init__(self, voice: str, rate_wpm: int) -> None:
        binary = shutil.which("espeak-ng")
        if binary is None:
            raise AssistantError("espeak-ng is not installed: run `sudo apt-get install espeak-ng`")
        self._command = [binary, "-v", voice, "-s", str(rate_wpm), "--stdout", "--stdin"]

    def speak(self, text: str) -> Speech:
        """Start espeak-ng; the header gives the rate, the rest streams."""
        # Unbuffered, and read with os.read only: no byte may wait in a Python buffer.
        process = subprocess.Popen(
            self._command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0
        )
        assert process.stdin is not None and process.stdout is not None  # noqa: S101 - PIPEs were asked for
        process.stdin.write(text.encode("utf-8"))
        process.stdin.close()
        header = b""
        while len(header) < _WAV_HEADER_BYTES:
            more = os.read(process.stdout.fileno(), _WAV_HEADER_BYTES - len(header))
            if not more:
                break
            header += more
        if len(header) < _WAV_HEADER_BYTES or header[:4] != b"RIFF":
            process.wait()
            raise AssistantError(f"espeak-ng produced no audio (exit {process.returncode})")
        (rate,) = struct.unpack_from("<I", header, 24)
        return Speech(int(rate), _stream(process))


def _stream(process: subprocess.Popen[bytes]) -> Iterator[bytes]:
    assert process.stdout is not None  # noqa: S101
    carry = b""
    try:
        while chunk := os.read(process.stdout.fileno(), _READ_BYTES):  # what is there, not a full buffer
            chunk = carry + chunk
            whole = len(chunk) // 2 * 2  # never half a sample
            carry = chunk[whole:]
            if whole:
                yield chunk[:whole]
    finally:
        process.stdout.close()
        if process.poll() is None:
            process.kill()
        process.wait()


class PiperVoice:
    """A Piper neural voice (loaded once: ~1 s and ~100 MB for a medium voice)."""

    def __init__(self, model: Path) -> None:
        try:
            from piper import PiperVoice as Loaded
        except ImportError as err:
            raise AssistantError("voice = piper needs `pip install piper-tts`") from err
        config = model.with_name(model.name + ".json")
        if not model.is_file() or not config.is_file():
            raise AssistantError(f"no Piper voice at {model} (with {config.name} beside it)")
        self._voice: Any = Loaded.load(str(model), config_path=str(config))

    def speak(self, text: str) -> Speech:
        """Synthesize sentence by sentence."""
        rate = int(self._voice.config.sample_rate)
        return Speech(rate, (chunk.audio_int16_bytes for chunk in self._voice.synthesize(text)))


def load_voice(settings: AssistantSettings) -> Voice:
    """The configured voice, or AssistantError saying what to install."""
    if settings.voice is VoiceEngine.PIPER:
        if settings.piper_model is None:
            raise AssistantError("voice = piper needs piper_model (a .onnx voice file)")
        return PiperVoice(settings.piper_model.expanduser())
    return EspeakVoice(settings.espeak_voice or _ESPEAK_VOICES[settings.language], settings.speech_rate_wpm)

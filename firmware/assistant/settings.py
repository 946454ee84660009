"""Settings of the assistant that answers on the device (cloud mode)."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from firmware.audio.output_settings import OUTPUT_KEYS


class Language(enum.StrEnum):
    """Languages with built-in sentences and replies."""

    ENGLISH = "en"
    KOREAN = "ko"


class VoiceEngine(enum.StrEnum):
    """What speaks the replies."""

    ESPEAK_NG = "espeak-ng"  # Debian's package: small, fast, robotic; the embedded default
    PIPER = "piper"  # neural, needs a voice model (`piper_model`)


class AssistantSettings(BaseModel):
    """What the speaker understands and how it answers (what it plays on: `OutputSettings`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    moved_fields: ClassVar[frozenset[str]] = OUTPUT_KEYS  # now [output]; still read for one release

    enabled: bool = Field(True, description="match final transcripts to intents and answer aloud")
    language: Language = Field(Language.ENGLISH, description="sentences, replies and voice")
    custom_sentences_dir: Path | None = Field(
        None, description="more hassil sentence files (*.yaml, Home Assistant's format) for the built-in intents"
    )
    voice: VoiceEngine = VoiceEngine.ESPEAK_NG
    espeak_voice: str | None = Field(None, max_length=32, description="espeak-ng voice; default: the language's")
    piper_model: Path | None = Field(None, description="Piper voice (.onnx, its .onnx.json beside it)")
    speech_rate_wpm: int = Field(165, ge=80, le=450, description="espeak-ng words per minute")
    answer_timeout_seconds: float = Field(
        8.0, gt=0, le=60, description="no answer from the cloud this long after the request ends: error sound"
    )
    max_timers: int = Field(10, ge=1, le=100)

"""What the speaker tells Home Assistant about itself (the answer to `describe`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from wyoming.audio import AudioFormat
from wyoming.info import Attribution, Info, MicProgram, Satellite, SndProgram, WakeModel, WakeProgram

from contract.audio import CHANNELS, SAMPLE_RATE_HZ, SAMPLE_WIDTH_BYTES

_EARMARK = Attribution(name="Earmark", url="")  # no public home to point at yet
_OPEN_WAKE_WORD = Attribution(name="openWakeWord", url="https://github.com/dscripka/openWakeWord")
WIRE_FORMAT = AudioFormat(rate=SAMPLE_RATE_HZ, width=SAMPLE_WIDTH_BYTES, channels=CHANNELS)


def _earmark(name: str, description: str) -> dict[str, Any]:
    """The fields every Earmark program and the satellite itself share."""
    return {"name": name, "attribution": _EARMARK, "installed": True, "description": description, "version": None}


def phrase(wake_word: str) -> str:
    """How a model's name is said: `hey_jarvis` -> `Hey Jarvis`."""
    return wake_word.replace("_", " ").title()


def describe(name: str, area: str | None, wake_words: Sequence[str], *, can_play: bool, muted: bool) -> Info:
    """The speaker as Home Assistant sees it; a muted speaker lists no active wake words."""
    models = [
        WakeModel(
            name=word,
            attribution=_OPEN_WAKE_WORD,
            installed=True,
            description=phrase(word),
            version=None,
            languages=["en"],
            phrase=phrase(word),
        )
        for word in wake_words
    ]
    return Info(
        wake=[WakeProgram(**_earmark("earmark-wake", "openWakeWord models, run on the speaker"), models=models)],
        mic=[MicProgram(**_earmark("earmark-mic", "the speaker's microphone"), mic_format=WIRE_FORMAT)],
        snd=(
            [SndProgram(**_earmark("earmark-speaker", "the speaker's loudspeaker"), snd_format=WIRE_FORMAT)]
            if can_play
            else []
        ),
        satellite=Satellite(
            **_earmark(name, "Earmark speaker (muted)" if muted else "Earmark speaker"),
            area=area,
            has_vad=True,
            active_wake_words=[] if muted else list(wake_words),
            max_active_wake_words=len(wake_words),
            supports_trigger=False,
        ),
    )

"""Final transcripts -> intents, with hassil (Home Assistant's own sentence matcher).

The built-in sentences live in `sentences/<language>.yaml`; a user's files in
`custom_sentences_dir` are merged over them, so sentences written for Home Assistant
(same format, same intent names such as HassStartTimer) carry over.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware.assistant.settings import Language
from firmware.errors import AssistantError

_LOGGER = logging.getLogger(__name__)
_BUILT_IN = Path(__file__).parent / "sentences"


@dataclass(frozen=True)
class Intent:
    """What a request asked for: an intent name and its slot values (numbers as int)."""

    name: str
    slots: dict[str, int | str] = field(default_factory=dict)


class IntentMatcher:
    """Loaded once at start-up (parsing the templates takes a few ms); matching is fast."""

    def __init__(self, language: Language, custom_sentences_dir: Path | None = None) -> None:
        import yaml
        from hassil import Intents
        from hassil.util import merge_dict

        self.language = language
        merged: dict[str, Any] = {}
        files = [_BUILT_IN / f"{language.value}.yaml"]
        if custom_sentences_dir is not None:
            if not custom_sentences_dir.is_dir():
                raise AssistantError(f"custom_sentences_dir {custom_sentences_dir} is not a directory")
            files += sorted(custom_sentences_dir.glob("*.yaml"))
        for path in files:
            try:
                loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
                raise AssistantError(f"cannot read sentences in {path}: {err}") from err
            if not isinstance(loaded, dict):
                raise AssistantError(f"{path} holds no hassil sentences (a mapping with 'intents')")
            if loaded.get("language", language.value) != language.value:
                continue  # another language's file in a shared folder
            merge_dict(merged, loaded)
        try:
            self._intents = Intents.from_dict(merged)
        except Exception as err:  # hassil raises plain exceptions for template syntax
            raise AssistantError(f"bad sentence template: {err}") from err

    def phrases(self, per_intent: int = 300) -> list[str]:
        """Sentences these templates accept, numbers as words (what a recognizer hears), for a
        recognizer's grammar mode: far more accurate on a small model, but nothing else is heard."""
        from hassil.sample import sample_intents

        sampled = sample_intents(
            self._intents, max_sentences_per_intent=per_intent, expand_ranges=True, language=self.language.value
        )
        return sorted({text for _intent, text in sampled if not any(c.isdigit() for c in text)})

    def match(self, text: str) -> Intent | None:
        """The intent of a transcript, or None."""
        from hassil import recognize

        if not text.strip():
            return None
        result = recognize(text, self._intents, language=self.language.value)
        if result is None:
            return None
        slots: dict[str, int | str] = {}
        for name, entity in result.entities.items():
            value = entity.value
            if isinstance(value, float) and value.is_integer():
                value = int(value)  # digits come back as floats, number words as ints
            slots[name] = value if isinstance(value, int | str) else str(value)
        return Intent(result.intent.name, slots)

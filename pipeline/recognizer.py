"""Streaming recognition with Vosk: one model per process, one recognizer per utterance."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

from contract.audio import SAMPLE_RATE_HZ
from contract.messages import RecognitionResult, Word
from pipeline.errors import ModelError

_LOGGER = logging.getLogger(__name__)

_MODELS: dict[Path, Any] = {}
_MODELS_LOCK = threading.Lock()


def load_model(path: Path) -> Any:
    """Load a Vosk model directory once per process (it costs seconds and ~0.5 GB)."""
    resolved = path.expanduser().resolve()
    with _MODELS_LOCK:
        if resolved not in _MODELS:
            if not (resolved / "am").is_dir() and not (resolved / "conf").is_dir():
                raise ModelError(f"{path}: not a Vosk model directory (no am/ or conf/)")
            import vosk

            vosk.SetLogLevel(-1)
            try:
                _MODELS[resolved] = vosk.Model(str(resolved))
            except Exception as err:  # vosk raises a bare Exception on a bad model
                raise ModelError(f"{path}: cannot load Vosk model ({err})") from err
            _LOGGER.info("loaded Vosk model %s", resolved)
        return _MODELS[resolved]


def nearest_phrase(text: str, phrases: list[str]) -> str:
    """In grammar mode, the allowed phrase closest to what Vosk decoded, by word edit distance.

    Vosk's grammar is a loop over the phrases' words, so it can decode "지금 시야 시야" for
    "지금 몇 시야", or pick up a word for the wake word left in the pre-roll. A closed set
    of commands should come out as one of its commands: the nearest one, when it is nearer
    than half its own length and no other is as near; otherwise the words as decoded.
    """
    heard = text.split()
    if not heard:
        return text
    scored = sorted((_edit_distance(heard, phrase.split()), phrase) for phrase in phrases if phrase.strip())
    if not scored:
        return text
    best_distance, best = scored[0]
    tied = len(scored) > 1 and scored[1][0] == best_distance
    if tied or best_distance > max(1, len(best.split()) // 2):
        return text
    return best


def _edit_distance(a: list[str], b: list[str]) -> int:
    row = list(range(len(b) + 1))
    for i, word in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, other in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (word != other))
    return row[-1]


class StreamingRecognizer:
    """Feed PCM as it arrives; ask for partials any time; finish once."""

    def __init__(self, model: Any, grammar: list[str] | None = None) -> None:
        import vosk

        if grammar:
            self._rec = vosk.KaldiRecognizer(model, SAMPLE_RATE_HZ, json.dumps(grammar, ensure_ascii=False))
        else:
            self._rec = vosk.KaldiRecognizer(model, SAMPLE_RATE_HZ)
        self._rec.SetWords(True)
        self._phrases = list(grammar or [])
        # Vosk ends a "result" at its own pauses; keep them so the final covers everything.
        self._segments: list[dict[str, Any]] = []
        self._last_partial = ""

    def accept(self, pcm: bytes) -> str | None:
        """Feed audio; return the partial transcript if it changed, else None."""
        if not pcm:
            return None
        if self._rec.AcceptWaveform(pcm):
            self._segments.append(json.loads(self._rec.Result()))
            text = self._joined_text()
        else:
            partial = json.loads(self._rec.PartialResult()).get("partial", "")
            text = " ".join(t for t in (self._joined_text(), partial) if t)
        if text != self._last_partial:
            self._last_partial = text
            return text
        return None

    def _joined_text(self) -> str:
        return " ".join(s.get("text", "") for s in self._segments if s.get("text"))

    def finish(self, utterance_id: Any) -> RecognitionResult:
        """The final transcript with word timings."""
        self._segments.append(json.loads(self._rec.FinalResult()))
        words = tuple(
            Word(
                word=w["word"],
                start_seconds=float(w["start"]),
                end_seconds=float(w["end"]),
                confidence=min(max(float(w.get("conf", 1.0)), 0.0), 1.0),
            )
            for segment in self._segments
            for w in segment.get("result", [])
        )
        text = self._joined_text()
        if self._phrases:
            text = nearest_phrase(text, self._phrases)  # the words keep what was actually decoded
        return RecognitionResult(utterance_id=utterance_id, final=True, text=text, words=words)

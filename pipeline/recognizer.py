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


class StreamingRecognizer:
    """Feed PCM as it arrives; ask for partials any time; finish once."""

    def __init__(self, model: Any, grammar: list[str] | None = None) -> None:
        import vosk

        if grammar:
            self._rec = vosk.KaldiRecognizer(model, SAMPLE_RATE_HZ, json.dumps(grammar, ensure_ascii=False))
        else:
            self._rec = vosk.KaldiRecognizer(model, SAMPLE_RATE_HZ)
        self._rec.SetWords(True)
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
        return RecognitionResult(utterance_id=utterance_id, final=True, text=self._joined_text(), words=words)

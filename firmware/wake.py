"""Wake-word detection with openWakeWord's models, on files (never downloaded at run time)."""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from contract.audio import FRAME_SAMPLES, FRAME_SECONDS
from firmware.errors import ConfigError, ModelLoadError
from firmware.wake_runner import WakeRunner

_LOGGER = logging.getLogger(__name__)

BUNDLED_WAKE_WORDS = ("alexa", "hey_jarvis", "hey_mycroft", "hey_rhasspy", "okay_nabu")

# Patience 2 took false accepts on the quality report's 0.87 h of negatives from 2 to 0
# for a few points of false rejects in noise. hey_rhasspy is the exception: it still
# fired on everyday speech (a three-frame run on "the shop on the corner..."), and a
# false wake streams a household's audio to the cloud, so for that model false accepts
# are bought down with false rejects in noise (see the README's figures).
DEFAULT_PATIENCE_FRAMES = {"hey_rhasspy": 4}
PATIENCE_FRAMES = 2
_FEATURE_MODELS = ("melspectrogram", "embedding_model")
_EXTENSIONS = {".tflite": "tflite", ".onnx": "onnx"}


class WakeWordSpec(BaseModel):
    """One wake word: a bundled name (`alexa`) or a path to a user's .tflite/.onnx model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(min_length=1)
    threshold: float = Field(0.5, gt=0.0, lt=1.0)
    # A real wake word holds its score for several 80 ms frames (4-11 on Piper speech);
    # most confusables in everyday speech spike for one. None means the word's default
    # (DEFAULT_PATIENCE_FRAMES), chosen from the wake-word quality report.
    patience_frames: int | None = Field(None, ge=1, le=10, description="consecutive frames at or above threshold")


class WakeSettings(BaseModel):
    """Which wake words to listen for and how eagerly."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    words: tuple[WakeWordSpec, ...] = (WakeWordSpec(model="alexa"),)
    refractory_seconds: float = Field(2.0, ge=0, le=30, description="ignore further wakes this long after one")
    warmup_seconds: float = Field(
        2.0, ge=0, le=10, description="silence fed at start-up so feature buffers hold real audio"
    )
    model_dir: Path | None = Field(
        None, description="folder with melspectrogram and embedding_model (default: pyopen-wakeword's models)"
    )

    @field_validator("words")
    @classmethod
    def _some_words(cls, words: tuple[WakeWordSpec, ...]) -> tuple[WakeWordSpec, ...]:
        if not words:
            raise ValueError("at least one wake word is needed")
        return words


@dataclass(frozen=True)
class WakeDetection:
    """A wake word crossed its threshold."""

    wake_word: str
    score: float


def bundled_model_dir() -> Path:
    """Where pyopen-wakeword keeps the official openWakeWord models.

    Found without importing the package: its own engine loads a native library at
    import, and the speaker only wants the model files.
    """
    spec = importlib.util.find_spec("pyopen_wakeword")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError("pyopen-wakeword is not installed (pip install 'earmark[device]')")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


@dataclass(frozen=True)
class ResolvedModels:
    """Model files and the inference framework they need."""

    framework: str
    wake_paths: tuple[Path, ...]
    melspec_path: Path
    embedding_path: Path


def resolve_models(settings: WakeSettings) -> ResolvedModels:
    """Turn wake-word names and paths into checked model files."""
    model_dir = settings.model_dir or bundled_model_dir()
    paths: list[Path] = []
    for spec in settings.words:
        candidate = Path(spec.model)
        if candidate.suffix in _EXTENSIONS:
            path = candidate.expanduser()
        elif "/" not in spec.model:
            path = model_dir / f"{spec.model}.tflite"
            if not path.exists() and (model_dir / f"{spec.model}.onnx").exists():
                path = model_dir / f"{spec.model}.onnx"
        else:
            raise ConfigError(f"wake word model {spec.model!r}: expected a name or a .tflite/.onnx path")
        if not path.is_file():
            known = sorted(p.stem for p in model_dir.glob("*.tflite") if p.stem not in _FEATURE_MODELS)
            raise ModelLoadError(f"wake word model {spec.model!r}: {path} not found (available: {', '.join(known)})")
        paths.append(path)
    frameworks = {_EXTENSIONS[p.suffix] for p in paths}
    if len(frameworks) != 1:
        raise ConfigError("wake word models must all be .tflite or all be .onnx")
    framework = frameworks.pop()
    stems = [p.stem for p in paths]
    if len(set(stems)) != len(stems):
        raise ConfigError(f"two wake word models share a name: {stems}")
    suffix = next(k for k, v in _EXTENSIONS.items() if v == framework)
    melspec, embedding = (model_dir / f"{name}{suffix}" for name in _FEATURE_MODELS)
    for feature in (melspec, embedding):
        if not feature.is_file():
            raise ModelLoadError(f"feature model {feature} not found; set wake.model_dir to a folder holding it")
    return ResolvedModels(framework, tuple(paths), melspec, embedding)


def load_model(resolved: ResolvedModels) -> WakeRunner:
    """The speaker's wake-word runner over the model files (the real loading path, no downloads)."""
    return WakeRunner(resolved.melspec_path, resolved.embedding_path, resolved.wake_paths)


class WakeWordDetector:
    """Scores each 80 ms frame and reports a wake word when it crosses its threshold.

    The model is fed every frame, also while the device is listening, so its feature
    buffers always hold the latest audio and there is no blind spot after a request.
    """

    def __init__(self, settings: WakeSettings, model: Any | None = None) -> None:
        resolved = resolve_models(settings)
        self._model = model if model is not None else load_model(resolved)
        self._specs = {p.stem: spec for p, spec in zip(resolved.wake_paths, settings.words, strict=True)}
        self._runs = dict.fromkeys(self._specs, 0)
        self._patience = {
            word: spec.patience_frames or DEFAULT_PATIENCE_FRAMES.get(word, PATIENCE_FRAMES)
            for word, spec in self._specs.items()
        }
        self._refractory_seconds = settings.refractory_seconds
        self._warmup_seconds = settings.warmup_seconds
        self._since_wake_seconds = float("inf")
        self.last_scores: dict[str, float] = {}
        self.reset()

    @property
    def wake_words(self) -> tuple[str, ...]:
        """Names of the loaded wake words."""
        return tuple(self._specs)

    def reset(self) -> None:
        """Clear the model's buffers and warm them with silence.

        openWakeWord starts its feature buffer from random noise; scores in the first
        ~2 s after a start or reset can jump over 0.5 on abrupt audio. Feeding silence
        first makes the first real frame behave like any other.
        """
        self._model.reset()
        silence = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        for _ in range(round(self._warmup_seconds / FRAME_SECONDS)):
            self._model.predict(silence)
        self._since_wake_seconds = float("inf")
        self._runs = dict.fromkeys(self._specs, 0)

    def process(self, frame: bytes, armed: bool = True) -> WakeDetection | None:
        """Score one 80 ms frame; return a detection if `armed` and a word fired."""
        samples = np.frombuffer(frame, dtype="<i2")
        scores: dict[str, float] = self._model.predict(samples)
        self.last_scores = scores
        self._since_wake_seconds += FRAME_SECONDS
        best: WakeDetection | None = None
        for word, spec in self._specs.items():
            score = float(scores.get(word, 0.0))
            self._runs[word] = self._runs[word] + 1 if score >= spec.threshold else 0
            if self._runs[word] >= self._patience[word] and (best is None or score > best.score):
                best = WakeDetection(word, score)
        if best is None or not armed or self._since_wake_seconds < self._refractory_seconds:
            return None
        self._since_wake_seconds = 0.0
        self._runs = dict.fromkeys(self._specs, 0)
        return best

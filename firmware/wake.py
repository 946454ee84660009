"""Wake-word detection with openWakeWord's models, on files (never downloaded at run time).

A word is detected in one of two ways (`WakeWordSpec.detection`):

- **two-stage** (the default for a word microWakeWord ships a model for): microWakeWord,
  a small streaming model, listens to every frame; when it hears the word, openWakeWord
  replays the last `confirm_seconds` of audio and must hear it too. The cheap model keeps
  the CPU low, the second, independently trained one keeps false wakes rare (both must
  agree), and a false wake that only one model hears never leaves the speaker.
- **openwakeword**: openWakeWord alone scores every frame, as before (a user's own model,
  or a word microWakeWord has no model for).
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, field_validator

from contract.audio import FRAME_SECONDS
from firmware.errors import ConfigError, ModelLoadError
from firmware.micro_wake import MicroWakeModel, bundled_micro_dir, micro_config
from firmware.two_stage import LIVE_FRAMES, Confirmer
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
# microWakeWord's own cutoffs (0.9+) are for a detector that decides alone. As the first of
# two stages it only has to let the word through to openWakeWord, so it listens more
# leniently; the wake-stages report (reports/wake_stages.md) chose the value.
FIRST_STAGE_CUTOFF = 0.1
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
    first_stage_cutoff: float | None = Field(
        None, gt=0.0, lt=1.0, description="two-stage: microWakeWord's cutoff (default FIRST_STAGE_CUTOFF)"
    )
    detection: Literal["auto", "two_stage", "openwakeword"] = Field(
        "auto",
        description="two_stage: microWakeWord listens, openWakeWord confirms; auto: two_stage where"
        " microWakeWord has a model for the word, else openwakeword",
    )


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
    micro_model_dir: Path | None = Field(
        None, description="folder of microWakeWord configs, NAME.json + .tflite (default: pymicro-wakeword's)"
    )
    confirm_seconds: float = Field(
        3.2, ge=2.5, le=6, description="two-stage: the audio openWakeWord replays to confirm a first-stage wake"
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
    # Words detected in two stages, by their openWakeWord name: their microWakeWord config.
    micro_configs: dict[str, Path] = field(default_factory=dict)


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
    micro_dir = settings.micro_model_dir or bundled_micro_dir()
    micro = {path.stem: _micro(micro_dir, spec) for path, spec in zip(paths, settings.words, strict=True)}
    two_stage = {word: config for word, config in micro.items() if config is not None}
    return ResolvedModels(framework, tuple(paths), melspec, embedding, two_stage)


def _micro(micro_dir: Path | None, spec: WakeWordSpec) -> Path | None:
    """The first-stage model of a two-stage word, None for a word openWakeWord scores alone."""
    if spec.detection == "openwakeword":
        return None
    config = micro_config(micro_dir, spec.model) if "/" not in spec.model else None
    if spec.detection == "auto":
        # A user's own model file, or no microWakeWord model for the word: openWakeWord alone.
        return config if config is not None and importlib.util.find_spec("pymicro_features") else None
    if config is None:
        raise ModelLoadError(
            f"wake word {spec.model!r}: two-stage detection needs microWakeWord's {spec.model}.json in"
            f" {micro_dir or 'pymicro-wakeword (not installed)'};"
            " set wake.micro_model_dir, or detection = 'openwakeword'"
        )
    if importlib.util.find_spec("pymicro_features") is None:
        raise ModelLoadError("two-stage wake detection needs pymicro-features (pip install 'earmark[device]')")
    return config


def load_model(resolved: ResolvedModels) -> WakeRunner:
    """The speaker's wake-word runner over the model files (the real loading path, no downloads)."""
    return WakeRunner(resolved.melspec_path, resolved.embedding_path, resolved.wake_paths)


class WakeWordDetector:
    """Reports a wake word when it is heard in an 80 ms frame (see the module's two ways).

    It is fed every frame, also while the device is listening, so its buffers always hold
    the latest audio and there is no blind spot after a request.
    """

    def __init__(self, settings: WakeSettings, model: Any | None = None) -> None:
        resolved = resolve_models(settings)
        runner = model if model is not None else load_model(resolved)
        self._specs = {p.stem: spec for p, spec in zip(resolved.wake_paths, settings.words, strict=True)}
        self._first_stage = {word: MicroWakeModel(config) for word, config in resolved.micro_configs.items()}
        self._cutoffs = {word: self._specs[word].first_stage_cutoff or FIRST_STAGE_CUTOFF for word in self._first_stage}
        # A word the first stage heard: the last frame it may still be confirmed in (0: none),
        # and the first frame judged for it.
        self._deadline = dict.fromkeys(self._first_stage, 0)
        self._since = dict.fromkeys(self._first_stage, 0)
        always_live = len(self._first_stage) < len(self._specs)
        self._confirmer = Confirmer(runner, settings.confirm_seconds, always_live=always_live)
        self._runs = dict.fromkeys(self._specs, 0)
        self._patience = {
            word: spec.patience_frames or DEFAULT_PATIENCE_FRAMES.get(word, PATIENCE_FRAMES)
            for word, spec in self._specs.items()
        }
        self._refractory_seconds = settings.refractory_seconds
        self._warmup_frames = round(settings.warmup_seconds / FRAME_SECONDS)
        self._since_wake_seconds = float("inf")
        self.last_scores: dict[str, float] = {}
        self.first_stage_scores: dict[str, float] = {}
        self.reset()

    @property
    def wake_words(self) -> tuple[str, ...]:
        """Names of the loaded wake words."""
        return tuple(self._specs)

    @property
    def two_stage_words(self) -> tuple[str, ...]:
        """The words microWakeWord listens for and openWakeWord confirms."""
        return tuple(self._first_stage)

    def describe(self) -> str:
        """How each word is detected, in words (for logs and the doctor)."""
        two_stage = self.two_stage_words
        alone = [w for w in self.wake_words if w not in two_stage]
        how = [f"{', '.join(two_stage)} (two-stage: microWakeWord listens, openWakeWord confirms)"] if two_stage else []
        how += [f"{', '.join(alone)} (openWakeWord alone)"] if alone else []
        return "; ".join(how)

    def reset(self) -> None:
        """Clear the models' buffers (an always-live openWakeWord is warmed with silence).

        openWakeWord starts its feature buffer from random noise; scores in the first
        ~2 s after a start or reset can jump over 0.5 on abrupt audio. Feeding silence
        first makes the first real frame behave like any other.
        """
        self._confirmer.reset(self._warmup_frames)
        for model in self._first_stage.values():
            model.reset()
        self._since_wake_seconds = float("inf")
        self._runs = dict.fromkeys(self._specs, 0)
        self._deadline = dict.fromkeys(self._first_stage, 0)

    def process(self, frame: bytes, armed: bool = True) -> WakeDetection | None:
        """Score one 80 ms frame; return a detection if `armed` and a word fired."""
        samples = np.frombuffer(frame, dtype="<i2")
        scores = self._confirmer.push(samples)
        self.last_scores = scores
        self._since_wake_seconds += FRAME_SECONDS
        best: WakeDetection | None = None
        for word, spec in self._specs.items():
            if word in self._first_stage:
                continue
            score = float(scores.get(word, 0.0))
            self._runs[word] = self._runs[word] + 1 if score >= spec.threshold else 0
            if self._runs[word] >= self._patience[word] and (best is None or score > best.score):
                best = WakeDetection(word, score)
        confirmed = self._two_stage(samples)
        if confirmed is not None and (best is None or confirmed.score > best.score):
            best = confirmed
        if best is None or not armed or self._since_wake_seconds < self._refractory_seconds:
            return None
        self._since_wake_seconds = 0.0
        self._runs = dict.fromkeys(self._specs, 0)
        return best

    def _two_stage(self, samples: npt.NDArray[np.int16]) -> WakeDetection | None:
        """The best word both stages heard in this frame, if any (used up either way)."""
        frame = self._confirmer.frame
        for word, model in self._first_stage.items():
            probability = model.process(samples)
            self.first_stage_scores[word] = probability
            if probability > self._cutoffs[word]:  # heard now: openWakeWord scores this hearing
                since = self._confirmer.heard()
                if not self._deadline[word]:
                    self._since[word] = since
                self._deadline[word] = frame + LIVE_FRAMES
        best: WakeDetection | None = None
        for word, deadline in self._deadline.items():
            if not deadline:
                continue
            spec = self._specs[word]
            score = self._confirmer.best(word, spec.threshold, self._patience[word], self._since[word])
            if score is not None and (best is None or score > best.score):
                best = WakeDetection(word, score)
            elif score is None and frame >= deadline:
                self._deadline[word] = 0  # openWakeWord did not hear it: no wake
        if best is not None:
            # Heard by both: a wake now, or none if the speaker is busy or just woke. Either
            # way this hearing is used up, for every word, so nothing can borrow it later.
            self._confirmer.use_up()
            self._deadline = dict.fromkeys(self._first_stage, 0)
        return best

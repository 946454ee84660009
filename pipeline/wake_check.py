"""A second, independent wake check in the cloud, before anything is recognized or stored.

A false wake is how people's private talk reached reviewers in the smart-speaker stories
of 2019. The device's wake word (openWakeWord) fired; here another model, trained apart
from it (microWakeWord, which Home Assistant's Voice PE runs on its own chip), listens to
the pre-roll the device sends anyway (the audio from before and around the wake word) and
a moment after it. If it does not hear the word, the request is refused before recognition:
the device is told at once and stops, nothing is recognized, no audio or transcript is kept,
and the clip store keeps only a counted record (`end_reason = wake_rejected`, with its
consent tag, no audio, no words).

It may only narrow: a word without a second model here (say `hey_rhasspy`) is served as
before, and a device's claim about its wake word can at most cost it its own request.
Models come from the `pymicro-wakeword` package (its files, run here with the TFLite
runtime the speaker uses); `models_dir` points at any directory of microWakeWord configs
(`NAME.json` beside its `.tflite`) instead.
"""

from __future__ import annotations

import json
import logging
import re
import statistics
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

from contract.audio import seconds_to_bytes
from pipeline.errors import PipelineError

_LOGGER = logging.getLogger(__name__)

# A device names a word as openWakeWord does ("alexa", "hey_jarvis_v0.1"): the version goes.
_VERSION = re.compile(r"_v\d+(\.\d+)*$")
# The check also hears this much silence after the audio, so a word ending at the very last
# moment still fills the model's averaging window.
_FLUSH_SECONDS: Final = 0.5
_FEATURE_STEP_BYTES: Final = 320  # 10 ms of 16 kHz s16le


class WakeCheckSettings(BaseModel):
    """The cloud's second wake check."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(True, description="re-check the wake word in the cloud before recognizing anything")
    models_dir: Path | None = Field(
        None, description="microWakeWord configs (NAME.json + .tflite); default: those pymicro-wakeword ships"
    )
    cutoff: float | None = Field(
        0.1,
        gt=0,
        lt=1,
        description="microWakeWord's cutoff here (None: each model's own). A second opinion on a wake the"
        " device already heard can be more lenient than a model deciding alone (reports/wake_stages.md)",
    )
    tail_seconds: float = Field(
        0.5, ge=0, le=3, description="live audio after the pre-roll the check also hears (the word may end there)"
    )


@dataclass(frozen=True)
class Verdict:
    """What the second check said, and what it cost."""

    heard: bool | None  # None: no second model for this word (served as before), or it failed
    cpu_seconds: float
    failed: str | None = None  # why the check could not run: the request is served, never reviewed


class WakeCheckUnavailable(PipelineError):
    """The second check was asked for and cannot run (no package, no models)."""

    code = "wake_check_unavailable"


class WakeVerifier:
    """The second models, one config per word. Each check builds its interpreter afresh (the
    models are streaming ones that keep state), so checks run on any number of threads."""

    def __init__(self, configs: dict[str, Path], interpreter: Any, cutoff: float | None = None) -> None:
        self._configs = configs
        self._interpreter = interpreter
        self._cutoff = cutoff
        # A model that cannot load does not stop the worker (the household's requests are still
        # served) but fails closed: each request for its word is kept from review, and the
        # worker says so at start and in its stats.
        self.broken: dict[str, str] = {}
        for word, config in configs.items():
            try:  # loaded and run once on silence: a model, its features and the runtime all work
                _MicroModel(interpreter, config, cutoff).hears(bytes(seconds_to_bytes(_FLUSH_SECONDS)))
            except Exception as err:  # any failure of a third-party model fails closed
                self.broken[word] = _reason(config, err)
                _LOGGER.error("wake check model for %r is unusable (%s): its requests are kept from review", word, err)

    @classmethod
    def from_settings(cls, settings: WakeCheckSettings) -> WakeVerifier | None:
        """The verifier the settings ask for, None when disabled, or WakeCheckUnavailable."""
        if not settings.enabled:
            return None
        directory = settings.models_dir
        if directory is None:
            try:
                from importlib import resources

                directory = Path(str(resources.files("pymicro_wakeword") / "models"))
            except ImportError as err:
                raise WakeCheckUnavailable(_INSTALL) from err
        configs = {path.stem: path for path in sorted(directory.glob("*.json"))}
        if not configs:
            raise WakeCheckUnavailable(f"no microWakeWord configs (NAME.json) in {directory}")
        return cls(configs, _interpreter_class(), settings.cutoff)

    @property
    def words(self) -> tuple[str, ...]:
        """The wake words checked a second time."""
        return tuple(self._configs)

    def check(self, wake_word: str, pcm: bytes) -> Verdict:
        """Whether the second model hears `wake_word` in `pcm` (16 kHz s16le mono)."""
        word = _VERSION.sub("", wake_word.lower())
        config = self._configs.get(word)
        if config is None:
            return Verdict(None, 0.0)
        if word in self.broken:
            return Verdict(None, 0.0, failed=self.broken[word])
        started = time.thread_time()
        try:
            model = _MicroModel(self._interpreter, config, self._cutoff)
            heard = model.hears(pcm + bytes(seconds_to_bytes(_FLUSH_SECONDS)))
        except Exception as err:  # served, kept from review: never a lost request
            return Verdict(None, time.thread_time() - started, failed=_reason(config, err))
        return Verdict(heard, time.thread_time() - started)


_INSTALL = (
    "the cloud wake check needs pymicro-wakeword and a TFLite runtime (pip install 'earmark[cloud]'), "
    "or turn it off with wake_check.enabled = false"
)


def _reason(config: Path, err: Exception) -> str:
    """Why a model failed, on one line (TFLite's messages span several)."""
    return f"{config}: {' '.join(str(err).split())}"


def _interpreter_class() -> Any:
    # The TFLite runtime the speaker runs too, not pymicro-wakeword's own C library: that
    # library, loaded beside this runtime, aborts the process (measured: a test process
    # running a speaker and a pipeline). tflite-runtime up to Python 3.11, LiteRT after.
    try:
        from tflite_runtime.interpreter import Interpreter
    except ImportError:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as err:
            raise WakeCheckUnavailable(_INSTALL) from err
    return Interpreter


class _MicroModel:
    """microWakeWord's streaming model, run as its own package runs it: 40 features per
    10 ms (pymicro-features), `stride` frames per inference, quantized; the word is heard
    when the mean of the last `sliding_window_size` probabilities passes the cutoff."""

    def __init__(self, interpreter: Any, config: Path, cutoff: float | None) -> None:
        spec = json.loads(config.read_text(encoding="utf-8"))
        micro = spec["micro"]
        self._cutoff = cutoff if cutoff is not None else float(micro["probability_cutoff"])
        self._window = int(micro["sliding_window_size"])
        self._model = interpreter(model_path=str(config.parent / spec["model"]))
        self._model.allocate_tensors()
        self._input = self._model.get_input_details()[0]
        self._output = self._model.get_output_details()[0]

    def hears(self, pcm: bytes) -> bool:
        import numpy as np

        in_scale, in_zero = self._input["quantization"]
        out_scale, out_zero = self._output["quantization"]
        stride = int(self._input["shape"][1])
        frames: list[Any] = []
        recent: deque[float] = deque(maxlen=self._window)
        for features in _features(pcm):
            frames.append(features)
            if len(frames) < stride:
                continue
            quantized = np.round(np.concatenate(frames, axis=1) / in_scale + in_zero).astype(self._input["dtype"])
            frames.clear()
            self._model.set_tensor(self._input["index"], quantized)
            self._model.invoke()
            output = self._model.get_tensor(self._output["index"])
            recent.append(float((output.astype(np.float32) - out_zero).item() * out_scale))
            if len(recent) == self._window and statistics.mean(recent) > self._cutoff:
                return True
        return False


def _features(pcm: bytes) -> Iterator[Any]:
    import numpy as np
    from pymicro_features import MicroFrontend

    frontend, at = MicroFrontend(), 0
    while at + _FEATURE_STEP_BYTES <= len(pcm):
        result = frontend.process_samples(pcm[at : at + _FEATURE_STEP_BYTES])
        at += result.samples_read * 2
        if result.features:
            yield np.array(result.features, dtype=np.float32).reshape(1, 1, -1)

"""microWakeWord on the speaker: the cheap first stage of two-stage wake detection.

microWakeWord (the models Home Assistant's Voice PE runs on a microcontroller) listens to
40 features per 10 ms and runs a small quantized streaming model every `stride` of them.
It costs a fraction of openWakeWord's three models per frame, so the speaker runs it on
every frame and wakes openWakeWord only to confirm what it heard (`firmware.wake`).

The model files come from the `pymicro-wakeword` package, found without importing it (its
own TFLite C library, loaded beside the runtime the speaker already uses, aborts the
process), and run with that runtime. `wake.micro_model_dir` points at any directory of
microWakeWord configs (`NAME.json` beside its `.tflite`) instead.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from contract.audio import FRAME_SAMPLES
from firmware import native_stderr
from firmware.errors import ModelLoadError
from firmware.wake_runner import interpreter_class, no_delegates

_LOGGER = logging.getLogger(__name__)

_STEP_BYTES = 320  # microWakeWord's features advance by 10 ms of 16 kHz s16le


def bundled_micro_dir() -> Path | None:
    """Where pymicro-wakeword keeps its models, or None when it is not installed."""
    spec = importlib.util.find_spec("pymicro_wakeword")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def micro_config(directory: Path | None, word: str) -> Path | None:
    """The microWakeWord config for `word` in `directory`, or None when there is none."""
    if directory is None:
        return None
    config = directory / f"{word}.json"
    return config if config.is_file() else None


class MicroWakeModel:
    """One microWakeWord model, streamed: `process` takes 80 ms frames (1,280 samples)."""

    def __init__(self, config: Path) -> None:
        try:
            spec = json.loads(config.read_text(encoding="utf-8"))
            # Its own probability_cutoff is for a model deciding alone; the first stage's
            # cutoff is the detector's (firmware.wake.FIRST_STAGE_CUTOFF).
            self._window = int(spec["micro"]["sliding_window_size"])
            path = config.parent / str(spec["model"])
            self._path = path
            self._model = self._load()
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
            raise ModelLoadError(f"microWakeWord model {config}: {err}") from err
        self._input = self._model.get_input_details()[0]
        self._output = self._model.get_output_details()[0]
        self._in_scale, self._in_zero = self._input["quantization"]
        self._out_scale, self._out_zero = self._output["quantization"]
        self._stride = int(self._input["shape"][1])
        if not self._in_scale or not self._out_scale:
            raise ModelLoadError(f"microWakeWord model {path}: not a quantized streaming model")
        self._frontend: Any = None
        self._pending = b""
        self._features: list[npt.NDArray[np.float32]] = []
        self._recent: deque[float] = deque(maxlen=self._window)
        self._fed = False  # whether the interpreter has run since it was built
        self.reset()

    def _load(self) -> Any:
        # Without XNNPACK: for a model this small it saves no time and its packed weights
        # cost resident memory, which a Pi Zero 2 W has least of.
        with native_stderr.filtered(lambda line: "XNNPACK delegate for CPU" not in line):
            model = interpreter_class()(model_path=str(self._path), num_threads=1, **no_delegates())
            model.allocate_tensors()
        return model

    def reset(self) -> None:
        """Forget all audio: a fresh feature front end, model state and averaging window.

        The model keeps its streaming state in variables that are set only on its first
        run; `reset_all_variables` does not reach them (measured: after "alexa" and a
        reset, silence still scored 0.996), so the interpreter is built again, as
        pymicro-wakeword itself does."""
        from pymicro_features import MicroFrontend

        self._frontend = MicroFrontend()
        self._pending = b""
        self._features.clear()
        self._recent.clear()
        if self._fed:
            self._model = self._load()
            self._fed = False

    def process(self, samples: npt.NDArray[np.int16]) -> float:
        """The highest windowed probability over this frame."""
        if samples.shape != (FRAME_SAMPLES,):
            raise ValueError(f"expected {FRAME_SAMPLES} samples, got {samples.shape}")
        pcm = self._pending + samples.astype("<i2").tobytes()
        best, at = 0.0, 0
        while at + _STEP_BYTES <= len(pcm):
            result = self._frontend.process_samples(pcm[at : at + _STEP_BYTES])
            at += result.samples_read * 2
            if not result.features:
                continue
            self._features.append(np.asarray(result.features, dtype=np.float32).reshape(1, 1, -1))
            if len(self._features) == self._stride:
                best = max(best, self._infer())
        self._pending = pcm[at:]
        return best

    def _infer(self) -> float:
        stacked = np.concatenate(self._features, axis=1)
        self._features.clear()
        quantized = np.round(stacked / self._in_scale + self._in_zero).astype(self._input["dtype"])
        self._fed = True
        self._model.set_tensor(self._input["index"], quantized)
        self._model.invoke()
        output = self._model.get_tensor(self._output["index"])
        self._recent.append(float((output.astype(np.float32).item() - self._out_zero) * self._out_scale))
        if len(self._recent) < self._window:
            return 0.0
        return sum(self._recent) / self._window

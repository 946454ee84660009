"""openWakeWord's streaming pipeline over its own model files, with fixed-size buffers.

openWakeWord runs three models per 80 ms frame: a melspectrogram model over the newest
1,760 samples, Google's speech embedding over the newest 76 mel rows, and each wake
word's classifier over the newest N embeddings. Its `Model.predict` gets there by
copying a 160,000-sample deque into a Python list every frame, re-allocating the
melspectrogram interpreter's tensors every frame (its input is 1,760 samples, not the
1,280 it is sized for) and growing and trimming float64 buffers with `vstack`. That
was most of its CPU, and importing it pulls scikit-learn, scipy and onnxruntime (131
MiB, 0.8 s) that a speaker never uses.

`WakeRunner` keeps only what the models read, in preallocated arrays, and feeds the
same interpreters the same float32 values in the same order, so its scores are
openWakeWord's (the wake-quality report compares them over its whole set). It loads
any openWakeWord-format model directory: TFLite through tflite-runtime or LiteRT, ONNX
through onnxruntime when that is installed.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from contract.audio import FRAME_SAMPLES
from firmware import native_stderr
from firmware.errors import ModelLoadError

_LOGGER = logging.getLogger(__name__)

# The melspectrogram model sees each frame plus the 480 samples before it (three 10 ms
# hops of context), as openWakeWord's streaming path does.
_CONTEXT_SAMPLES = 480
_MEL_WINDOW_ROWS = 76
_MEL_BANDS = 32
# openWakeWord zeroes a word's first five scores after a reset, while buffers fill.
_SILENT_FIRST_PREDICTIONS = 5

FloatArray = npt.NDArray[np.float32]
Runner = Callable[[FloatArray], FloatArray]


def interpreter_class() -> Any:
    """The TFLite `Interpreter`: tflite-runtime (Python <= 3.11) or LiteRT (any Python)."""
    try:
        from tflite_runtime.interpreter import Interpreter
    except ImportError:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as err:
            raise ModelLoadError(
                "no TFLite runtime: install tflite-runtime (Python <= 3.11) or ai-edge-litert (Python >= 3.12)"
            ) from err
    return Interpreter


def no_delegates() -> dict[str, Any]:
    """Interpreter arguments that leave out the default delegates (XNNPACK), where the runtime has them.

    Only for small models: openWakeWord's embedding model runs six times slower without
    XNNPACK (measured: 187 against 32 ms for 2.5 s of audio), which costs more than the
    5.6 MiB its packed weights take."""
    for module in ("tflite_runtime.interpreter", "ai_edge_litert.interpreter"):
        try:
            resolver = importlib.import_module(module).OpResolverType
        except (ImportError, AttributeError):
            continue
        return {"experimental_op_resolver_type": resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    return {}


class _TfliteModel:
    """One interpreter with one input and one output, resized only when the shape changes."""

    def __init__(self, path: Path, input_shape: tuple[int, ...] | None = None) -> None:
        try:
            # TFLite announces its XNNPACK delegate on stderr for every interpreter, past any
            # log level; on every device command it read like a problem.
            with native_stderr.filtered(lambda line: "XNNPACK delegate for CPU" not in line):
                self._interpreter = interpreter_class()(model_path=str(path), num_threads=1)
                self._input = self._interpreter.get_input_details()[0]["index"]
                if input_shape is not None:  # the melspectrogram model's input length is open
                    self._interpreter.resize_tensor_input(self._input, list(input_shape), strict=True)
                self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError, OSError) as err:
            raise ModelLoadError(f"cannot load {path}: {err}") from err
        self._output = self._interpreter.get_output_details()[0]["index"]
        self.input_shape = tuple(int(d) for d in self._interpreter.get_input_details()[0]["shape"])
        self._shape = self.input_shape

    def __call__(self, x: FloatArray) -> FloatArray:
        if x.shape != self._shape:
            self._interpreter.resize_tensor_input(self._input, list(x.shape), strict=True)
            self._interpreter.allocate_tensors()
            self._shape = x.shape
        self._interpreter.set_tensor(self._input, x)
        self._interpreter.invoke()
        out: FloatArray = self._interpreter.get_tensor(self._output)
        return out


class _OnnxModel:
    """The same interface over onnxruntime, for users whose models are .onnx."""

    def __init__(self, path: Path) -> None:
        try:
            import onnxruntime
        except ImportError as err:
            raise ModelLoadError(f"{path}: .onnx models need onnxruntime (pip install onnxruntime)") from err
        options = onnxruntime.SessionOptions()
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = 1
        try:
            self._session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own untyped exceptions on bad files
            raise ModelLoadError(f"cannot load {path}: {err}") from err
        self._name = self._session.get_inputs()[0].name
        self.input_shape = tuple(d if isinstance(d, int) else 1 for d in self._session.get_inputs()[0].shape)

    def __call__(self, x: FloatArray) -> FloatArray:
        out: FloatArray = self._session.run(None, {self._name: x})[0]
        return out


def _load(path: Path, input_shape: tuple[int, ...] | None = None) -> _TfliteModel | _OnnxModel:
    return _OnnxModel(path) if path.suffix == ".onnx" else _TfliteModel(path, input_shape)


class WakeRunner:
    """Scores 80 ms frames (1,280 int16 samples) for each wake word, like `openwakeword.Model`."""

    def __init__(self, melspec_path: Path, embedding_path: Path, wake_paths: Sequence[Path]) -> None:
        self._melspec = _load(melspec_path, (1, _CONTEXT_SAMPLES + FRAME_SAMPLES))
        self._embedding = _load(embedding_path)
        self._words = {path.stem: _load(path) for path in wake_paths}
        # A classifier's input is (1, embeddings, 96): how many embeddings it reads.
        self._inputs = {word: model.input_shape[1] for word, model in self._words.items()}
        for word, model in self._words.items():
            if model(np.zeros((1, self._inputs[word], model.input_shape[2]), np.float32)).size != 1:
                raise ModelLoadError(f"wake word model {word!r} has several outputs; Earmark needs one score")
        embedding_size = self._embedding(np.ones((1, _MEL_WINDOW_ROWS, _MEL_BANDS, 1), np.float32)).size
        self._features = np.zeros((max(self._inputs.values()), embedding_size), np.float32)
        self._audio = np.zeros((1, _CONTEXT_SAMPLES + FRAME_SAMPLES), np.float32)
        self._mel = np.ones((1, _MEL_WINDOW_ROWS, _MEL_BANDS, 1), np.float32)
        self._audio_samples = 0
        self._predictions = 0

    @property
    def words(self) -> tuple[str, ...]:
        """The wake words, named by their model files."""
        return tuple(self._words)

    def reset(self) -> None:
        """Forget all audio, as after a fresh start."""
        self._audio[:] = 0
        self._mel[:] = 1.0
        self._features[:] = 0
        self._audio_samples = 0
        self._predictions = 0

    def predict(self, samples: npt.NDArray[np.int16]) -> dict[str, float]:
        """Scores for one frame of exactly 1,280 samples."""
        if samples.shape != (FRAME_SAMPLES,):
            raise ValueError(f"expected {FRAME_SAMPLES} samples, got {samples.shape}")
        audio = self._audio
        audio[0, :_CONTEXT_SAMPLES] = audio[0, FRAME_SAMPLES:]
        audio[0, _CONTEXT_SAMPLES:] = samples
        self._audio_samples += FRAME_SAMPLES
        # Right after a reset there is no context yet: the model sees the frame alone.
        window = audio if self._audio_samples > FRAME_SAMPLES else audio[:, _CONTEXT_SAMPLES:]
        rows = np.squeeze(self._melspec(window)) / 10 + 2  # openWakeWord's melspec transform
        mel = self._mel[0, :, :, 0]
        count = rows.shape[0]
        mel[:-count] = mel[count:]
        mel[-count:] = rows
        features = self._features
        features[:-1] = features[1:]
        features[-1] = self._embedding(self._mel).reshape(-1)
        self._predictions += 1
        scores: dict[str, float] = {}
        for word, model in self._words.items():
            if self._predictions <= _SILENT_FIRST_PREDICTIONS:
                scores[word] = 0.0
                continue
            score = model(features[-self._inputs[word] :][None])
            scores[word] = float(score.reshape(-1)[0])
        return scores

"""Give openWakeWord (the reference the device's runner is measured against) a TFLite interpreter.

Measuring code, not shipped: only `scripts.reference_wake` needs it.

The speaker itself never imports openWakeWord: firmware/wake_runner.py picks
tflite-runtime or LiteRT directly. openwakeword 0.6 does `import tflite_runtime.interpreter`. tflite-runtime has wheels
for Python <= 3.11 only; Raspberry Pi OS Trixie ships 3.13, where LiteRT
(`ai-edge-litert`) offers the same `Interpreter` API. When tflite_runtime is missing we
register LiteRT's interpreter module under that name before openWakeWord imports it.
"""

from __future__ import annotations

import importlib
import logging
import sys
import types

from firmware.errors import ModelLoadError

_LOGGER = logging.getLogger(__name__)


def ensure_tflite_runtime(prefer_litert: bool = False) -> str:
    """Make `tflite_runtime.interpreter` importable; return which runtime backs it."""
    if not prefer_litert:
        try:
            importlib.import_module("tflite_runtime.interpreter")
            return "tflite_runtime"
        except ImportError:
            pass
    try:
        litert = importlib.import_module("ai_edge_litert.interpreter")
    except ImportError as err:
        raise ModelLoadError(
            "no TFLite runtime: install tflite-runtime (Python <= 3.11) or ai-edge-litert (Python >= 3.12)"
        ) from err
    package = types.ModuleType("tflite_runtime")
    package.interpreter = litert  # type: ignore[attr-defined]
    sys.modules["tflite_runtime"] = package
    sys.modules["tflite_runtime.interpreter"] = litert
    _LOGGER.debug("using ai-edge-litert as tflite_runtime")
    return "ai_edge_litert"

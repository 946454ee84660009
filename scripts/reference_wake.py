"""openWakeWord's own `Model` over the device's model files: the reference the device's
wake-word runner (`firmware.wake_runner`) is measured against.

Measuring code, not shipped: the benchmarks, the wake-word report and the runner's
equivalence test use it; the speaker never imports openWakeWord (it is in the dev extra).
"""

from __future__ import annotations

from typing import Any

from firmware.errors import ModelLoadError
from firmware.wake import ResolvedModels, WakeSettings, WakeWordDetector, resolve_models


def load_reference_model(resolved: ResolvedModels) -> Any:
    """openWakeWord's own `Model` over the same files: the reference the runner is measured against.

    Not a device dependency: the benchmarks and the wake-quality report install it.
    """
    if resolved.framework == "tflite":
        from scripts.litert_shim import ensure_tflite_runtime

        ensure_tflite_runtime()
    try:
        import openwakeword
    except ImportError as err:
        raise ModelLoadError("openwakeword is not installed (it is the reference, in the dev extra)") from err
    try:
        return openwakeword.Model(
            wakeword_models=[str(p) for p in resolved.wake_paths],
            inference_framework=resolved.framework,
            melspec_model_path=str(resolved.melspec_path),
            embedding_model_path=str(resolved.embedding_path),
        )
    except (ValueError, RuntimeError, OSError) as err:
        raise ModelLoadError(f"cannot load wake word models: {err}") from err


def reference_detector(settings: WakeSettings) -> WakeWordDetector:
    """A detector over openWakeWord's own `Model` (the reference), for comparisons."""
    return WakeWordDetector(settings, load_reference_model(resolve_models(settings)))

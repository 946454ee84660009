"""The speaker's wake-word runner scores exactly as openWakeWord does, and stays lean."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from nacl.signing import SigningKey

from contract.audio import FRAME_SAMPLES
from contract.consent_signature import public_key_pem
from firmware.errors import ModelLoadError
from firmware.wake import (
    BUNDLED_WAKE_WORDS,
    WakeSettings,
    WakeWordDetector,
    WakeWordSpec,
    load_model,
    resolve_models,
)
from firmware.wake_runner import WakeRunner
from scripts.reference_wake import reference_detector
from tests.broker import free_port
from tests.conftest import FIXTURES, REPO, Pcm, load_pcm

ALL_WORDS = WakeSettings(words=tuple(WakeWordSpec(model=w, detection="openwakeword") for w in BUNDLED_WAKE_WORDS))


def trace(detector: WakeWordDetector, pcm: Pcm) -> np.ndarray:
    detector.reset()
    rows = []
    for i in range(0, len(pcm) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
        detector.process(pcm[i : i + FRAME_SAMPLES].tobytes(), armed=False)
        rows.append([float(detector.last_scores[w]) for w in BUNDLED_WAKE_WORDS])
    return np.asarray(rows)


def test_scores_equal_openwakewords_on_speech_noise_and_silence(sample_pcm: Pcm) -> None:
    rng = np.random.default_rng(7)
    noise = (rng.standard_normal(16000 * 3) * 3000).astype(np.int16)
    positives = [load_pcm(p) for p in sorted((FIXTURES / "positives").glob("*.wav"))[:6]]
    # Abrupt starts, loud noise, a reset between clips: where buffering bugs would show.
    audio = np.concatenate([sample_pcm, noise, np.zeros(8000, np.int16), *positives])
    lean = WakeWordDetector(ALL_WORDS)
    reference = reference_detector(ALL_WORDS)
    ours, theirs = trace(lean, audio), trace(reference, audio)
    assert ours.shape == theirs.shape and ours.shape[0] > 300
    assert theirs.max() > 0.9  # the comparison covers real detections, not only near-zero scores
    assert np.abs(ours - theirs).max() <= 0.001


def test_frames_of_the_wrong_size_are_refused() -> None:
    runner = load_model(resolve_models(WakeSettings()))
    with pytest.raises(ValueError, match="1280 samples"):
        runner.predict(np.zeros(FRAME_SAMPLES - 1, np.int16))


def test_a_model_file_that_is_not_a_model_is_a_clear_error(tmp_path: Path) -> None:
    resolved = resolve_models(WakeSettings())
    bad = tmp_path / "broken.tflite"
    bad.write_bytes(b"not a flatbuffer")
    with pytest.raises(ModelLoadError, match=r"broken\.tflite"):
        WakeRunner(resolved.melspec_path, resolved.embedding_path, [bad])


def test_the_speaker_never_imports_what_it_does_not_use(tmp_path: Path) -> None:
    # A child process: this one has imported openWakeWord for the reference above.
    key = tmp_path / "consent.pub"
    key.write_text(public_key_pem(bytes(SigningKey.generate().verify_key)))
    script = textwrap.dedent(
        f"""
        import json, sys
        from hardware.speaker import SpeakerSettings, run
        from firmware.watchdog import Notifier
        from gpiozero.pins.mock import MockFactory
        settings = SpeakerSettings.model_validate({{
            "input": "sample", "state_dir": {str(tmp_path)!r}, "consent_public_key": {str(key)!r},
            "identity": {{"device_id": "kitchen-1", "household_id": "h-1"}},
            "mqtt": {{"port": {free_port()}}}, "gpio": {{"enabled": True}},
        }})
        assert run(settings, Notifier({{}}), pin_factory=MockFactory()) == 0
        print(json.dumps(sorted({{name.split(".")[0] for name in sys.modules}})))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, check=True)
    loaded = set(json.loads(done.stdout.splitlines()[-1]))
    # It did run the front end, the uplink, the consent check and the lights.
    assert {"numpy", "webrtcvad", "paho", "nacl", "gpiozero", "tflite_runtime"} <= loaded
    unused = {"openwakeword", "onnxruntime", "sklearn", "scipy", "pyopen_wakeword", "cryptography", "pydantic_settings"}
    assert not loaded & unused

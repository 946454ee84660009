"""The LiteRT path (Python 3.12+ devices, Raspberry Pi OS Trixie) gives the same detections."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.conftest import REPO


def test_litert_stands_in_for_tflite_runtime() -> None:
    # A child process: the shim must be installed before openwakeword is first imported.
    script = textwrap.dedent(
        """
        import json, sys
        sys.modules["tflite_runtime"] = None  # as on Python 3.12+: no tflite-runtime wheel
        from firmware.wake_runner import interpreter_class
        interpreter = interpreter_class()
        from firmware.audio.source import SAMPLE_WAV
        from firmware.frontend import FrontEnd, FrontEndSettings
        from firmware.wake import WakeSettings, WakeWordDetector
        from firmware.audio.wav import WavFileSource
        frontend = FrontEnd(FrontEndSettings(), WakeWordDetector(WakeSettings()))
        events = []
        frontend.subscribe(lambda e: events.append(e.summary()))
        for frame in WavFileSource(SAMPLE_WAV).frames():
            frontend.process(frame)
        frontend.end_of_input()
        print(json.dumps({"module": interpreter.__module__, "events": events}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120, check=True
    )
    result = json.loads(done.stdout)
    assert result["module"].startswith("ai_edge_litert")
    kinds = [e["type"] for e in result["events"] if e["type"] not in ("state_changed", "utterance_audio")]
    assert kinds == ["wake_detected", "speech_started", "speech_ended", "utterance_ready"]

"""Regenerate the small audio fixtures committed for the tests and the bundled sample.

    python -m scripts.make_fixtures

Piper samples its output (noise_scale), so a rerun gives slightly different audio; the
tests assert behaviour, not exact samples, so any regenerated set must still pass them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from firmware.audio.source import SAMPLE_WAV
from scripts.speech import WAKE_PHRASES, piper, silence, write_wav

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"


def main() -> None:
    """Write every fixture."""
    write_wav(SAMPLE_WAV, np.concatenate([silence(1.0), piper("Alexa, turn on the kitchen lights."), silence(1.5)]))
    requests = {1.0: "what time is it?", 1.2: "set a timer for ten minutes."}
    for word, phrase in WAKE_PHRASES.items():
        for scale, request in requests.items():
            audio = np.concatenate([silence(0.5), piper(f"{phrase}, {request}", length_scale=scale), silence(1.0)])
            write_wav(FIXTURES / "positives" / f"{word}_{scale:.1f}.wav", audio)
    write_wav(FIXTURES / "alexa_only.wav", np.concatenate([silence(0.5), piper("Alexa.")]))
    write_wav(FIXTURES / "stop.wav", piper("Stop."))
    # A false wake: a news line openWakeWord alone hears "alexa" in, and microWakeWord does not
    # (Piper varies from call to call: a new one must be checked with scripts.wake_stages.wakes).
    false_wake = piper("Alex said the election results would be in by midnight.", length_scale=1.1)
    write_wav(FIXTURES / "false_wake_alex.wav", np.concatenate([silence(0.5), false_wake, silence(1.0)]))
    print(f"wrote fixtures under {FIXTURES} and {SAMPLE_WAV}")


if __name__ == "__main__":
    main()

"""What the arm64 stand-in's listen check hears and compares: the bundled request through
a file-backed ALSA microphone, and events stripped of what differs by run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def asoundrc(raw: Path) -> str:
    """A capture device backed by a file: PyAudio opens it like a microphone."""
    return (
        "pcm.nullsink { type null }\n"
        f'pcm.filemic {{ type file slave.pcm "nullsink" file "/dev/null" infile "{raw}" format "raw" }}\n'
        'pcm.fakemic { type plug slave { pcm "filemic" format S16_LE rate 16000 channels 1 }\n'
        '  hint { show on description "file-backed test microphone" } }\n'
    )


def write_raw_sample(path: Path, seconds: float | None = None, wav: bool = False) -> None:
    """The bundled request as raw 16 kHz PCM (or WAV), optionally cut to `seconds`."""
    import numpy as np

    from contract.audio import SAMPLE_RATE_HZ
    from firmware.audio.source import SAMPLE_WAV
    from firmware.audio.wav import read_wav
    from scripts.speech import write_wav

    _info, pcm = read_wav(SAMPLE_WAV)
    if seconds is not None:
        pcm = pcm[: int(seconds * SAMPLE_RATE_HZ) * 2]
    if wav:
        write_wav(path, np.frombuffer(pcm, dtype="<i2"))
    else:
        path.write_bytes(pcm)


def comparable(event: dict[str, Any]) -> dict[str, Any]:
    """An event without what differs by run (ids, wall-clock times) and rounded scores."""
    kept = {k: v for k, v in event.items() if k not in ("utterance_id", "at", "timestamp")}
    if "score" in kept:
        kept["score"] = round(float(kept["score"]), 3)
    return kept

"""What the cloud's second wake check costs per request, and what it says (reported, never asserted).

    python -m scripts.bench_wake_check [--repeats 50]

For each word the check has a model for: the project's positive clips (a wake word, then a
request) and speech that is not the word (Korean requests, spoken by espeak-ng, and the other
words' clips). Each is checked as the pipeline checks a request: a 1.5 s pre-roll ending
where the speaker would have fired (for a positive, the end of the clip's wake word; for a
negative, the middle of the clip) and 0.5 s after it. Reports the CPU per check (thread
time, as `IngestStats.wake_check_cpu_seconds` counts it) and how many positives were kept
and negatives refused.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.wake_check import WakeCheckSettings, WakeVerifier
from scripts.load_cluster import GRAMMAR
from scripts.speech import espeak, silence
from tests.conftest import FIXTURES, Pcm, load_pcm

PREROLL = 24_000  # samples: 1.5 s
TAIL = 8_000  # 0.5 s


def heard_window(pcm: Pcm, fired_at: int) -> bytes:
    """The audio the pipeline checks for a wake that fired at sample `fired_at`."""
    padded = np.concatenate([silence(1.5), pcm, silence(0.5)])
    at = fired_at + len(silence(1.5))
    return bytes(padded[at - PREROLL : at + TAIL].astype("<i2").tobytes())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("reports/wake_check_bench.json"))
    args = parser.parse_args()
    verifier = WakeVerifier.from_settings(WakeCheckSettings())
    if verifier is None:
        raise SystemExit("the wake check is turned off")
    korean = [np.concatenate([espeak(phrase, "ko", 140), silence(0.3)]) for phrase in GRAMMAR]
    clips = {path.stem: load_pcm(path) for path in sorted((FIXTURES / "positives").glob("*.wav"))}
    result: dict[str, Any] = {"words": {}}
    costs: list[float] = []
    for word in verifier.words:
        mine = [pcm for name, pcm in clips.items() if name.startswith(f"{word}_")]
        others = [pcm for name, pcm in clips.items() if not name.startswith(f"{word}_")]
        # A positive's wake word ends about 1 s in (the clips are the word, then a request):
        # the speaker fires then; the window tries every 100 ms around it, as detection varies.
        kept = sum(
            any(verifier.check(word, heard_window(pcm, end)).heard for end in range(12_000, 22_000, 1_600))
            for pcm in mine
        )
        refused = 0
        negatives = [*korean, *others]
        for pcm in negatives:
            verdict = verifier.check(word, heard_window(pcm, len(pcm) // 2))
            refused += verdict.heard is False
        window = heard_window(korean[0], len(korean[0]) // 2)
        for _ in range(args.repeats):
            costs.append(verifier.check(word, window).cpu_seconds)
        result["words"][word] = {
            "positives_kept": f"{kept}/{len(mine)}",
            "negatives_refused": f"{refused}/{len(negatives)}",
        }
    result["cpu_ms_per_check"] = {
        "mean": round(statistics.mean(costs) * 1000, 2),
        "p99": round(float(np.percentile(costs, 99)) * 1000, 2),
        "checks": len(costs),
        "audio_seconds_per_check": 2.0,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

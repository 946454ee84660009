"""Should the speaker clean its microphone of noise before the wake word? (reported, never asserted)

    python -m scripts.bench_noise [--quick] [--out reports/noise_bench.json]

WebRTC's noise suppression and automatic gain (pywebrtc-audio, the library the echo
canceller comes from) in front of the device's default wake detection, against none, on
the wake-word report's sets: "Alexa" before a request by Piper at four speeds and four
espeak-ng voices, clean, in pink noise at 10 and 0 dB SNR, in household babble at 0 dB,
and far-field; false accepts per hour on the report's negatives and TV-like set. Each
clip gets a fresh processor, as after a restart: the worst case for a noise estimate.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from contract.audio import SAMPLE_RATE_HZ
from firmware.wake import WakeSettings, WakeWordDetector
from scripts.speech import Pcm, mix_at_snr, pink_noise, silence
from scripts.wake_rooms import room
from scripts.wake_stages import tv_like, wakes
from scripts.wakeword_quality import negatives, positives

Clean = Callable[[Pcm], Pcm]


def processing(**options: Any) -> Clean:
    """A fresh WebRTC audio processor per clip, with these options, over the whole clip."""
    import pywebrtc_audio

    def clean(pcm: Pcm) -> Pcm:
        processor = pywebrtc_audio.AudioProcessor(sample_rate=SAMPLE_RATE_HZ, num_channels=1, **options)
        usable = pcm[: len(pcm) // 160 * 160]
        out: Pcm = processor.process(usable)
        return out

    return clean


DESIGNS: dict[str, Clean | None] = {
    "none": None,
    "noise suppression (moderate)": processing(noise_suppression=True, ns_level=1),
    "noise suppression (high)": processing(noise_suppression=True, ns_level=2),
    "gain control": processing(auto_gain_control=True),
    "noise suppression (moderate) + gain control": processing(
        noise_suppression=True, ns_level=1, auto_gain_control=True
    ),
}


def conditions(pcm: Pcm, babble: Pcm, rng: np.random.Generator) -> Iterator[tuple[str, Pcm]]:
    seconds = len(pcm) / SAMPLE_RATE_HZ
    yield "clean", pcm
    yield "pink 10 dB", mix_at_snr(pcm, pink_noise(seconds, rng), 10.0)
    yield "pink 0 dB", mix_at_snr(pcm, pink_noise(seconds, rng), 0.0)
    start = int(rng.integers(0, len(babble) - len(pcm)))
    yield "babble 0 dB", mix_at_snr(pcm, babble[start : start + len(pcm)], 0.0)
    yield "far-field", room(pcm, rng)


def run(quick: bool) -> dict[str, Any]:
    rng = np.random.default_rng(2028)
    detector = WakeWordDetector(WakeSettings())
    negative_sets = [(f"{voice}, {condition}", audio) for voice, condition, audio in [*negatives(rng), *tv_like(rng)]]
    babble = next(audio for name, audio in negative_sets if "babble" in name)
    kept: dict[str, dict[str, list[int]]] = {d: {} for d in DESIGNS}
    cpu = dict.fromkeys(DESIGNS, 0.0)
    audio_seconds = 0.0
    for index, (word, _voice, clip) in enumerate(positives(rng)):
        if word != "alexa" or (quick and index % 4):
            continue
        for condition, audio in conditions(clip, babble, rng):
            audio_seconds += len(audio) / SAMPLE_RATE_HZ
            for design, clean in DESIGNS.items():
                started = time.process_time()
                heard = audio if clean is None else clean(audio)
                cpu[design] += time.process_time() - started
                hit = any(w == word for w, _ in wakes(detector, heard))
                kept[design].setdefault(condition, [0, 0])[0] += hit
                kept[design][condition][1] += 1
    false_accepts: dict[str, dict[str, int]] = {d: {} for d in DESIGNS}
    negative_seconds = 0.0
    for index, (name, audio) in enumerate(negative_sets):
        if quick and index % 3:
            continue
        negative_seconds += len(audio) / SAMPLE_RATE_HZ
        padded = np.concatenate([silence(0.5), audio])
        for design, clean in DESIGNS.items():
            heard = padded if clean is None else clean(padded)
            false_accepts[design][name] = len(wakes(detector, heard))
    return {
        "detection": detector.describe(),
        "positives_kept": kept,
        "false_accepts": false_accepts,
        "false_accepts_per_hour": {
            d: round(sum(v.values()) / (negative_seconds / 3600), 2) for d, v in false_accepts.items()
        },
        "negative_hours": round(negative_seconds / 3600, 3),
        "cpu_ms_per_audio_second": {d: round(s / audio_seconds * 1000, 2) for d, s in cpu.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a quarter of the positives, a third of the negatives")
    parser.add_argument("--out", type=Path, default=Path("reports/noise_bench.json"))
    args = parser.parse_args()
    result = run(args.quick)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""Wake-word stages report: what reaches storage with each detection design (issue 27).

    python -m scripts.wake_stages [--out reports/wake_stages.md] [--quick]

Every clip runs through the speaker's own detector as a speaker runs it (armed, default
thresholds, refractory time), once per design:

- **device alone**: openWakeWord on every frame (`detection = "openwakeword"`);
- **two-stage device**: microWakeWord listens, openWakeWord confirms (the default), one
  speaker per word with that word alone;
- **+ cloud**: each of the above, with every wake re-checked as the cloud does it
  (`pipeline.wake_check`, on the 1.5 s pre-roll and 0.5 s after the wake).

A wake on a negative clip that passes every stage is a false accept that reaches
storage. Positives: each word spoken before a request by Piper at four speeds and by
espeak-ng voices, clean, at 10 and 0 dB pink noise, and far-field (a simulated room's
impulse response, clean and at 10 dB). Negatives: the quality report's everyday speech
and noise, plus a TV-like set (news, dialogue and adverts full of near-misses such as
"Alexis" and "Jarvis", over a music bed at 10 dB), far-field too.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from contract.audio import FRAME_BYTES, SAMPLE_RATE_HZ, seconds_to_bytes
from firmware.frontend import FrontEndSettings
from firmware.micro_wake import bundled_micro_dir, micro_config
from firmware.wake import BUNDLED_WAKE_WORDS, FIRST_STAGE_CUTOFF, WakeSettings, WakeWordDetector, WakeWordSpec
from pipeline.wake_check import WakeCheckSettings, WakeVerifier
from scripts.speech import Pcm, espeak, mix_at_snr, pink_noise, piper, silence
from scripts.wake_rooms import music_bed, room
from scripts.wakeword_quality import negatives, positives

# What the speaker sends before its wake and what the pipeline hears after it, as shipped.
PREROLL_SECONDS = FrontEndSettings().preroll_seconds
TAIL_SECONDS = WakeCheckSettings().tail_seconds
ALONE = "device alone"

TV_SENTENCES = (
    "Tonight on the news: Alexis Morgan reports from the flooded valley.",
    "Jarvis Cocker and his band play a surprise show in the park.",
    "Hey, my crafty friend, did you bring the glue?",
    "Okay, now boo the villain when he walks on stage!",
    "A lexicon of words you never knew you needed, only on channel five.",
    "Alex said the election results would be in by midnight.",
    "Hey, Jarvis, you left your keys on the counter again.",
    "Hey, mister Croft, your table is ready.",
    "Okay, Naboo is the planet from that old space film.",
    "Alexa Chung wears the new spring collection in our studio today.",
    "Buy one, get one free, this weekend only at Electra Stores.",
    "The detective said: hey, rhapsody in blue was playing all night.",
    "Next up, the weather with Alexia and the five day forecast.",
    "And now, back to the match: Jarvis passes, shoots, and scores!",
    "Our reporter asked: okay, but who pays for the new bridge?",
    "The lexus dealership downtown has a sale on every model.",
)


@dataclass
class Tally:
    """Positives kept and false accepts, for one design."""

    positives: int = 0
    kept: int = 0
    false_accepts: int = 0


def tv_like(rng: np.random.Generator) -> Iterator[tuple[str, str, Pcm]]:
    """(voice, condition, audio): TV-like speech over a music bed, clean-room and far-field."""
    blocks = []
    for scale in (0.9, 1.1):
        blocks.append(np.concatenate([np.concatenate([piper(s, scale), silence(0.4)]) for s in TV_SENTENCES]))
    for voice, wpm in (("en-us", 170), ("en-gb+f3", 160)):
        blocks.append(np.concatenate([np.concatenate([espeak(s, voice, wpm), silence(0.4)]) for s in TV_SENTENCES]))
    for audio in blocks:
        bed = music_bed(len(audio) / SAMPLE_RATE_HZ, rng)
        with_music = mix_at_snr(audio, bed, 10.0)
        yield "tv", "music 10 dB", with_music
        yield "tv", "far-field, music 10 dB", room(with_music, rng)


def conditions(pcm: Pcm, rng: np.random.Generator) -> Iterator[tuple[str, Pcm]]:
    """The clean clip, noisy at 10 and 0 dB, and far-field."""
    seconds = len(pcm) / SAMPLE_RATE_HZ
    yield "clean", pcm
    yield "pink 10 dB", mix_at_snr(pcm, pink_noise(seconds, rng), 10.0)
    yield "pink 0 dB", mix_at_snr(pcm, pink_noise(seconds, rng), 0.0)
    far = room(pcm, rng)
    yield "far-field", far
    yield "far-field, pink 10 dB", mix_at_snr(far, pink_noise(seconds, rng), 10.0)


def wakes(detector: WakeWordDetector, pcm: Pcm) -> list[tuple[str, bytes]]:
    """(word, audio the cloud would check) for each wake, as the speaker would send it."""
    detector.reset()
    data = np.concatenate([pcm, silence(TAIL_SECONDS)]).astype("<i2").tobytes()
    found = []
    preroll_bytes, tail_bytes = seconds_to_bytes(PREROLL_SECONDS), seconds_to_bytes(TAIL_SECONDS)
    for at in range(0, len(data) - FRAME_BYTES + 1, FRAME_BYTES):
        detection = detector.process(data[at : at + FRAME_BYTES])
        if detection is not None:
            end = at + FRAME_BYTES
            found.append((detection.wake_word, data[max(0, end - preroll_bytes) : end + tail_bytes]))
    return found


def judge(
    alone: WakeWordDetector,
    singles: dict[float, list[WakeWordDetector]],
    verifiers: dict[float, WakeVerifier],
    pcm: Pcm,
    word: str | None,
) -> dict[str, int]:
    """Per design: for a positive, 1 if its word woke the speaker; for a negative, the wakes.

    A two-stage design is one speaker per word, each with that word alone (as households
    set them up, and the replay path a single word takes); a word with no microWakeWord
    model is detected by openWakeWord alone there too, so its wakes are the device's."""
    found_alone = wakes(alone, pcm)
    found = {ALONE: found_alone}
    for cutoff, detectors in singles.items():
        two = {w for d in detectors for w in d.two_stage_words}
        found[two_stage(cutoff)] = [f for d in detectors for f in wakes(d, pcm)] + [
            f for f in found_alone if f[0] not in two
        ]
    out = {}
    for name, kept in found.items():
        designs = [(name, kept)]
        for cutoff, verifier in verifiers.items():
            if name == ALONE or name == two_stage(cutoff):
                checked = [(w, a) for w, a in kept if verifier.check(w, a).heard is not False]
                designs.append((f"{name} + {cloud(cutoff)}", checked))
        for design, heard in designs:
            out[design] = int(any(w == word for w, _ in heard)) if word else len(heard)
    return out


def two_stage(cutoff: float) -> str:
    """A two-stage design's name."""
    return f"two-stage device (first stage {cutoff:g})"


def cloud(cutoff: float) -> str:
    """A cloud check's name."""
    return f"cloud ({cutoff:g})"


def run(quick: bool, cutoffs: list[float]) -> dict[str, Any]:
    """Every clip through every design, all designs on the very same audio (Piper varies per call)."""
    rng = np.random.default_rng(2027)
    words = BUNDLED_WAKE_WORDS
    alone = WakeWordDetector(WakeSettings(words=tuple(WakeWordSpec(model=w, detection="openwakeword") for w in words)))
    singles: dict[float, list[WakeWordDetector]] = {}
    verifiers = {}
    for cutoff in cutoffs:
        micro = [w for w in words if micro_config(bundled_micro_dir(), w) is not None]
        singles[cutoff] = [
            WakeWordDetector(WakeSettings(words=(WakeWordSpec(model=w, first_stage_cutoff=cutoff),))) for w in micro
        ]
        verifier = WakeVerifier.from_settings(WakeCheckSettings(cutoff=cutoff))
        if verifier is None:
            raise SystemExit("the cloud wake check is off")
        verifiers[cutoff] = verifier
    tallies: dict[str, dict[str, dict[str, Tally]]] = {}
    negative_seconds: dict[str, float] = {}
    for index, (word, _voice, clean) in enumerate(positives(rng)):
        if quick and index % 6:
            continue
        for condition, audio in conditions(clean, rng):
            for design, hit in judge(alone, singles, verifiers, audio, word).items():
                tally = tallies.setdefault(design, {}).setdefault(word, {}).setdefault(condition, Tally())
                tally.positives += 1
                tally.kept += hit
    negative_sets = [*negatives(rng), *tv_like(rng)]
    for index, (voice, condition, audio) in enumerate(negative_sets):
        if quick and index % 3:
            continue
        key = f"{voice}, {condition}"
        negative_seconds[key] = negative_seconds.get(key, 0.0) + len(audio) / SAMPLE_RATE_HZ
        for design, count in judge(alone, singles, verifiers, audio, None).items():
            tallies.setdefault(design, {}).setdefault("negatives", {}).setdefault(key, Tally()).false_accepts += count
    two_stage_words = tuple(w for d in singles[cutoffs[0]] for w in d.two_stage_words)
    return {"tallies": tallies, "negative_seconds": negative_seconds, "two_stage_words": two_stage_words}


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """Totals per design: positives lost, false accepts and their rate, per word and per set."""
    tallies, seconds = result["tallies"], result["negative_seconds"]
    hours = sum(seconds.values()) / 3600
    designs = {}
    for design in tallies:
        per_word = {w: c for w, c in tallies[design].items() if w != "negatives"}
        positives_total = sum(t.positives for c in per_word.values() for t in c.values())
        kept = sum(t.kept for c in per_word.values() for t in c.values())
        fas = sum(t.false_accepts for t in tallies[design].get("negatives", {}).values())
        designs[design] = {
            "positives": positives_total,
            "positives_lost": positives_total - kept,
            "false_accepts": fas,
            "false_accepts_per_hour": fas / hours if hours else 0.0,
            "per_word": {w: {c: [t.kept, t.positives] for c, t in conds.items()} for w, conds in per_word.items()},
            "negatives": {k: t.false_accepts for k, t in tallies[design].get("negatives", {}).items()},
        }
    return {
        "negative_hours": hours,
        "negative_sets_seconds": seconds,
        "designs": designs,
        "two_stage_words": list(result["two_stage_words"]),
    }


def markdown(data: dict[str, Any], default_cutoff: float, minutes: float) -> str:
    """The report: every design's totals, then the shipped designs per word, condition and set."""
    designs = data["designs"]
    alone = designs[ALONE]
    shipped = [ALONE, f"{ALONE} + {cloud(default_cutoff)}", two_stage(default_cutoff)]
    shipped.append(f"{shipped[-1]} + {cloud(default_cutoff)}")
    lines = [
        "# Wake-word stages: what reaches storage",
        "",
        f"Generated by `python -m scripts.wake_stages` in {minutes:.1f} min. Positives: each word before a request,"
        f" Piper and espeak-ng voices, clean, noisy and far-field. Negatives: {data['negative_hours']:.2f} h of"
        " everyday speech, noise and TV-like audio (news and adverts full of near-misses over a music bed),"
        f" clean and far-field. Two-stage words: {', '.join(data['two_stage_words'])} (hey_rhasspy has no"
        " microWakeWord model: openWakeWord alone on the device, and the cloud serves it unchecked).",
        "",
        "A false accept *reaches storage* when every stage passes it. The number in brackets is microWakeWord's"
        f" cutoff, on the device's first stage or in the cloud check; the shipped default is {default_cutoff:g}.",
        "",
        "![Operating points: positives lost against false accepts per hour reaching storage](wake_stages.png)",
        "",
        "| design | positives kept | lost | more lost per 40 than device alone | false accepts | FA/h to storage |",
        "|---|---|---|---|---|---|",
    ]
    for name, d in designs.items():
        extra = (d["positives_lost"] - alone["positives_lost"]) / d["positives"] * 40 if d["positives"] else 0
        lines.append(
            f"| {name} | {d['positives'] - d['positives_lost']} / {d['positives']} | {d['positives_lost']} | "
            f"{extra:+.2f} | {d['false_accepts']} | {d['false_accepts_per_hour']:.2f} |"
        )
    lines += ["", "## Positives kept, per word and condition (shipped designs)", ""]
    conds = list(next(iter(alone["per_word"].values())).keys())
    lines += ["| design | word | " + " | ".join(conds) + " |", "|---|---|" + "---|" * len(conds)]
    for name in shipped:
        for word, per in designs[name]["per_word"].items():
            lines.append(f"| {name} | {word} | " + " | ".join(f"{per[c][0]}/{per[c][1]}" for c in conds) + " |")
    lines += ["", "## False accepts, per negative set (shipped designs)", ""]
    lines += ["| set | seconds | " + " | ".join(shipped) + " |", "|---|---|" + "---|" * len(shipped)]
    for key, seconds in data["negative_sets_seconds"].items():
        row = " | ".join(str(designs[d]["negatives"].get(key, 0)) for d in shipped)
        lines.append(f"| {key} | {seconds:.0f} | {row} |")
    return "\n".join(lines) + "\n"


def draw(path: Path, data: dict[str, Any]) -> Path:
    """The designs' operating points beside the report, one line per family over the cutoffs."""
    from scripts.plots import stage_points

    families: dict[str, list[tuple[float, float, str]]] = {}
    for name, d in data["designs"].items():
        cutoffs = re.findall(r"([\d.]+)\)", name)
        family = re.sub(r" \((first stage )?[\d.]+\)", "", name)
        families.setdefault(family, []).append(
            (d["false_accepts_per_hour"], d["positives_lost"] / d["positives"], cutoffs[0] if cutoffs else "")
        )
    return stage_points(path, families, data["negative_hours"])


def main() -> None:
    """Build the report."""
    default_cutoff = FIRST_STAGE_CUTOFF
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("reports/wake_stages.md"))
    parser.add_argument("--quick", action="store_true", help="a sixth of the positives, a third of the negatives")
    parser.add_argument(
        "--cutoffs", default="0.05,0.1,0.2,0.3", help="microWakeWord cutoffs to compare (device and cloud alike)"
    )
    parser.add_argument("--from-json", action="store_true", help="re-render the report from its saved JSON")
    args = parser.parse_args()
    cutoffs = sorted({float(c) for c in args.cutoffs.split(",")} | {default_cutoff})
    if WakeCheckSettings().cutoff != default_cutoff:
        raise SystemExit("the cloud check's default cutoff and the device's first stage's differ: report both")
    if args.from_json:  # e.g. after the defaults changed to a cutoff the run already measured
        data = json.loads(args.out.with_suffix(".json").read_text())
        if two_stage(default_cutoff) not in data["designs"]:
            raise SystemExit(f"the saved run did not measure cutoff {default_cutoff:g}: run it again")
        args.out.write_text(markdown(data, default_cutoff, data["minutes"]))
        print(f"re-rendered {args.out} and {draw(args.out.with_suffix('.png'), data)}")
        return
    started = time.monotonic()
    data = summary(run(args.quick, cutoffs))
    minutes = data["minutes"] = (time.monotonic() - started) / 60
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown(data, default_cutoff, minutes))
    args.out.with_suffix(".json").write_text(json.dumps(data, indent=1))
    print(f"wrote {args.out} and {draw(args.out.with_suffix('.png'), data)} ({minutes:.1f} min)")


if __name__ == "__main__":
    main()

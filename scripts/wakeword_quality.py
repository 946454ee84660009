"""Wake-word quality report: false rejects per SNR and false accepts per hour.

    python -m scripts.wakeword_quality [--out reports/wakeword_quality.md]

Positives: each shipped wake word followed by a request, spoken by Piper (en_US-joe-medium)
at several length scales and by espeak-ng voices, clean and mixed with pink and white
noise at 20/10/5 dB SNR. Negatives: over 30 minutes of everyday speech that never says a
wake word (a sentence set separate from the tests' own), Piper and espeak-ng, clean and
at 10 dB, plus pink, white and babble noise. All five models run together, as a device
enabling every word would run them; per-frame scores are kept so the same audio is
judged at several thresholds and patience settings.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from contract.audio import FRAME_SAMPLES, SAMPLE_RATE_HZ
from firmware.wake import BUNDLED_WAKE_WORDS, WakeSettings, WakeWordDetector, WakeWordSpec
from scripts.reference_wake import reference_detector
from scripts.speech import (
    REQUESTS,
    WAKE_PHRASES,
    Pcm,
    espeak,
    mix_at_snr,
    pink_noise,
    piper,
    silence,
    white_noise,
)

PIPER_SCALES = (0.85, 1.0, 1.15, 1.3)
ESPEAK_VOICES = (("en-us", 150), ("en-gb", 165), ("en-us+f3", 145), ("en-us+m3", 175))
SNRS_DB = (20.0, 10.0, 5.0)
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
PATIENCES = (1, 2, 3, 4)
COLUMNS = ("clean", "pink 20 dB", "white 20 dB", "pink 10 dB", "white 10 dB", "pink 5 dB", "white 5 dB")

# Held out from the tests' NEGATIVE_SENTENCES so settings chosen here are not tuned to them.
REPORT_SENTENCES = (
    "I'm going to the hardware store to buy some nails and a hammer.",
    "The soup is too hot, let it cool down for a minute.",
    "Did you remember to lock the back door last night?",
    "We're driving to the coast on Saturday if the weather holds.",
    "The kids left their shoes all over the hallway again.",
    "Can you believe how expensive vegetables have become?",
    "My sister is moving to a new apartment next month.",
    "Put the leftovers in the fridge before you go to bed.",
    "The match was cancelled because of the thunderstorm.",
    "I need to renew my passport before the summer holiday.",
    "He painted the fence white and now it looks brand new.",
    "There's a fresh pot of coffee in the kitchen if you want some.",
    "The heating doesn't seem to work in the upstairs bathroom.",
    "Let's invite the neighbours over for dinner on Friday.",
    "The plumber said he would come by around ten tomorrow.",
    "She knitted a warm scarf for each of her grandchildren.",
    "I've been reading a wonderful book about the history of maps.",
    "The parking lot was completely full when we arrived.",
    "Please don't leave the lights on when you leave the room.",
    "The oranges on the table are for the picnic tomorrow.",
    "Our flight was delayed by almost three hours.",
    "The tap in the kitchen has been dripping all week.",
    "He told a very funny story about his first job.",
    "We should clean out the garage before winter comes.",
    "The orchestra played beautifully at the festival.",
    "Could you turn the music down a little while I'm on the phone?",
    "I think we're out of eggs and flour for the cake.",
    "The little boy lost his balloon at the fair.",
    "Tomorrow morning I have a dentist appointment at nine.",
    "That restaurant serves the best noodles in town.",
    "The wind blew the leaves all over the front porch.",
    "Grandpa likes to sit on the bench and feed the pigeons.",
    "We'll need more chairs if everyone comes to the party.",
    "The blue sweater shrank in the washing machine.",
    "My laptop keeps freezing whenever I open too many windows.",
    "The farmer's market opens at seven on weekends.",
    "I left my glasses somewhere in the living room.",
    "There were so many stars in the sky last night.",
    "The new bakery down the street makes excellent croissants.",
    "Let's take the scenic route through the hills.",
    "The tickets for the play sold out in an hour.",
    "Don't forget your raincoat, it's pouring outside.",
    "He spent the whole afternoon fixing the old radio.",
    "The puppy chewed through another pair of slippers.",
    "We watched the sunset from the top of the hill.",
    "The doctor said I should drink more water every day.",
    "Our team finally won the championship after ten years.",
    "I'd like to learn how to bake sourdough bread.",
    "Somebody left a package on the front step this morning.",
    "The lake was frozen solid by the middle of January.",
    "Would you like some honey in your tea?",
    "The elevator in our building is broken again.",
    "Her garden is full of roses and lavender every June.",
    "The bus driver waved at the children as they crossed.",
    "I'm thinking of repainting the kitchen cupboards yellow.",
    "The cinema downtown is showing an old black and white film.",
    "They found a lost kitten under the porch.",
    "Let me check the calendar before I say yes.",
    "The river flooded the fields after the heavy rain.",
    "He always whistles while he does the dishes.",
)


@dataclass
class Clip:
    """Per-frame scores of one clip for every word."""

    kind: str  # "positive" or "negative"
    word: str | None  # the wake word a positive contains
    voice: str  # "piper" or "espeak"
    condition: str  # "clean", "pink 10 dB", ...
    seconds: float
    scores: npt.NDArray[np.float32]  # frames x words


def score(detector: WakeWordDetector, pcm: Pcm) -> npt.NDArray[np.float32]:
    """Per-frame score of every word, from a freshly reset model."""
    detector.reset()
    data = pcm.astype("<i2")
    rows = []
    for i in range(0, len(data) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
        detector.process(data[i : i + FRAME_SAMPLES].tobytes(), armed=False)
        rows.append([detector.last_scores[w] for w in BUNDLED_WAKE_WORDS])
    return np.asarray(rows, dtype=np.float32)


def detections(scores: npt.NDArray[np.float32], threshold: float, patience: int, refractory_frames: int = 25) -> int:
    """How many times one word's score trace fires under a threshold and patience rule."""
    count, run, cooldown = 0, 0, 0
    for value in scores:
        cooldown = max(cooldown - 1, 0)
        run = run + 1 if value >= threshold else 0
        if run >= patience and cooldown == 0:
            count, run, cooldown = count + 1, 0, refractory_frames
    return count


def conditions(pcm: Pcm, rng: np.random.Generator) -> Iterator[tuple[str, Pcm]]:
    """The clean clip and its noisy versions."""
    yield "clean", pcm
    for snr in SNRS_DB:
        yield f"pink {snr:.0f} dB", mix_at_snr(pcm, pink_noise(len(pcm) / SAMPLE_RATE_HZ, rng), snr)
        yield f"white {snr:.0f} dB", mix_at_snr(pcm, white_noise(len(pcm) / SAMPLE_RATE_HZ, rng), snr)


def positives(rng: np.random.Generator) -> Iterator[tuple[str, str, Pcm]]:
    """(word, voice, audio) for every positive clip, padded with silence."""
    for word, phrase in WAKE_PHRASES.items():
        for scale in PIPER_SCALES:
            for request in REQUESTS:
                yield word, "piper", np.concatenate([silence(0.5), piper(f"{phrase}, {request}", scale), silence(0.8)])
        for voice, wpm in ESPEAK_VOICES:
            for request in REQUESTS[:3]:
                yield (
                    word,
                    "espeak",
                    np.concatenate([silence(0.5), espeak(f"{phrase}, {request}", voice, wpm), silence(0.8)]),
                )


def negatives(rng: np.random.Generator) -> Iterator[tuple[str, str, Pcm]]:
    """(voice, condition, audio) for the negative set, in ~1 minute blocks."""

    def spoken(say: Callable[[str], Pcm]) -> Pcm:
        return np.concatenate(
            [np.concatenate([say(s), silence(float(rng.uniform(0.2, 0.9)))]) for s in REPORT_SENTENCES]
        )

    blocks: list[tuple[str, Pcm]] = []
    for scale in (0.9, 1.0, 1.2):
        blocks.append(("piper", spoken(functools.partial(piper, length_scale=scale))))
    for voice, wpm in ESPEAK_VOICES:
        blocks.append(("espeak", spoken(functools.partial(espeak, voice=voice, words_per_minute=wpm))))
    for voice, audio in blocks:
        yield voice, "clean", audio
    # The same speech at 10 dB pink noise, and babble: three voices talking at once.
    for voice, audio in blocks[:2] + blocks[3:5]:
        yield voice, "pink 10 dB", mix_at_snr(audio, pink_noise(len(audio) / SAMPLE_RATE_HZ, rng), 10.0)
    n = min(len(b) for _, b in blocks[2:5])
    babble = sum(b[:n].astype(np.float64) for _, b in blocks[2:5]) / 2
    yield "mixed", "babble", np.clip(babble, -32768, 32767).astype(np.int16)
    yield "noise", "pink", pink_noise(300.0, rng, rms=0.08)
    yield "noise", "white", white_noise(300.0, rng, rms=0.04)


def collect(
    detector: WakeWordDetector, rng: np.random.Generator, reference: WakeWordDetector | None = None
) -> tuple[list[Clip], float]:
    """Score every positive and negative clip; with a reference, also the largest score difference."""
    clips: list[Clip] = []
    largest_difference = 0.0

    def scored(audio: Pcm) -> npt.NDArray[np.float32]:
        nonlocal largest_difference
        ours = score(detector, audio)
        if reference is not None:
            largest_difference = max(largest_difference, float(np.abs(ours - score(reference, audio)).max()))
        return ours

    for word, voice, clean in positives(rng):
        for condition, audio in conditions(clean, rng):
            clips.append(Clip("positive", word, voice, condition, len(audio) / SAMPLE_RATE_HZ, scored(audio)))
    for voice, condition, audio in negatives(rng):
        clips.append(Clip("negative", None, voice, condition, len(audio) / SAMPLE_RATE_HZ, scored(audio)))
    return clips, largest_difference


def load_clips(path: Path) -> list[Clip]:
    """Clips saved by an earlier run."""
    clips = []
    with np.load(path) as saved:
        for key in sorted(saved.files, key=lambda k: int(k.split("|")[0])):
            _i, kind, word, voice, condition, seconds = key.split("|")
            word_or_none = None if word == "None" else word
            clips.append(Clip(kind, word_or_none, voice, condition, float(seconds), saved[key]))
    return clips


def summarize(clips: list[Clip]) -> dict[str, object]:
    """False-reject rates and false accepts per hour for every rule."""
    words = list(BUNDLED_WAKE_WORDS)
    neg = [c for c in clips if c.kind == "negative"]
    neg_hours = sum(c.seconds for c in neg) / 3600
    speech_hours = sum(c.seconds for c in neg if c.voice != "noise") / 3600
    results: dict[str, object] = {"negative_hours": neg_hours, "negative_speech_hours": speech_hours, "rules": {}}
    rules: dict[str, object] = {}
    for threshold in THRESHOLDS:
        for patience in PATIENCES:
            per_word: dict[str, object] = {}
            for wi, word in enumerate(words):
                pos = [c for c in clips if c.kind == "positive" and c.word == word]
                frr: dict[str, dict[str, float]] = {}
                for voice in ("piper", "espeak"):
                    for condition in sorted({c.condition for c in pos}):
                        group = [c for c in pos if c.voice == voice and c.condition == condition]
                        missed = sum(detections(c.scores[:, wi], threshold, patience) == 0 for c in group)
                        frr.setdefault(voice, {})[condition] = missed / len(group)
                false_accepts = sum(detections(c.scores[:, wi], threshold, patience) for c in neg)
                # Positives of other words are negatives for this one (cross-talk).
                cross = sum(
                    detections(c.scores[:, wi], threshold, patience) > 0
                    for c in clips
                    if c.kind == "positive" and c.word != word and c.condition == "clean"
                )
                per_word[word] = {
                    "frr": frr,
                    "false_accepts": false_accepts,
                    "false_accepts_per_hour": false_accepts / neg_hours,
                    "cross_word_accepts": cross,
                }
            rules[f"threshold={threshold} patience={patience}"] = per_word
    results["rules"] = rules
    return results


TARGET_CONDITIONS = ("clean", "pink 20 dB", "white 20 dB", "pink 10 dB", "white 10 dB")


def recommend(summary: dict[str, Any], max_fa_per_hour: float = 0.5) -> dict[str, dict[str, Any]]:
    """Per word: the rule with the lowest worst-case Piper FRR at >= 10 dB within the FA budget."""
    best: dict[str, dict[str, Any]] = {}
    for rule, per_word in summary["rules"].items():
        threshold, patience = (float(part.split("=")[1]) for part in rule.split())
        for word, stats in per_word.items():
            if stats["false_accepts_per_hour"] > max_fa_per_hour:
                continue
            worst = max(stats["frr"]["piper"][c] for c in TARGET_CONDITIONS)
            key = (worst, -threshold, patience)  # ties: the stricter threshold, then less patience
            if word not in best or key < best[word]["_key"]:
                best[word] = {
                    "_key": key,
                    "threshold": threshold,
                    "patience_frames": int(patience),
                    "worst_piper_frr_at_10db_or_better": worst,
                    "false_accepts_per_hour": stats["false_accepts_per_hour"],
                }
    return {w: {k: v for k, v in r.items() if k != "_key"} for w, r in best.items()}


NOISE_LEVELS = {"clean": ("clean",), "20 dB": ("pink 20 dB", "white 20 dB"), "10 dB": ("pink 10 dB", "white 10 dB"),
                "5 dB": ("pink 5 dB", "white 5 dB")}  # fmt: skip
DET_THRESHOLDS = tuple(round(t, 2) for t in np.linspace(0.02, 0.98, 49))


def det_points(clips: list[Clip], negative_hours: float) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """Per word and noise level: (false accepts per hour, false-reject rate) as the threshold
    sweeps, patience 1. Positives are Piper's; every negative counts toward false accepts."""
    negatives = [c for c in clips if c.kind == "negative"]
    curves: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for wi, word in enumerate(BUNDLED_WAKE_WORDS):
        fa_per_hour = [
            sum(detections(c.scores[:, wi], threshold, 1) for c in negatives) / negative_hours
            for threshold in DET_THRESHOLDS
        ]
        curves[word] = {}
        for level, conditions_at_level in NOISE_LEVELS.items():
            peaks = np.array(
                [
                    c.scores[:, wi].max()
                    for c in clips
                    if c.kind == "positive"
                    and c.word == word
                    and c.voice == "piper"
                    and c.condition in conditions_at_level
                ]
            )
            # Patience 1: a positive is missed exactly when its peak stays under the threshold.
            frr = [float((peaks < threshold).mean()) for threshold in DET_THRESHOLDS]
            curves[word][level] = list(zip(fa_per_hour, frr, strict=True))
    return curves


def chosen_points(summary: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """Each word's recommended rule as (FA/h, clean Piper FRR), for marking on its curve."""
    points = {}
    for word, rec in summary.get("recommended", {}).items():
        stats = summary["rules"][f"threshold={rec['threshold']} patience={rec['patience_frames']}"][word]
        points[word] = (stats["false_accepts_per_hour"], stats["frr"]["piper"]["clean"])
    return points


def draw(out: Path, clips: list[Clip], summary: dict[str, Any]) -> list[Path]:
    """The DET curves: every word on one picture, and one picture per word."""
    from scripts.plots import det_curves

    curves = det_points(clips, summary["negative_hours"])
    chosen = chosen_points(summary)
    pictures = [det_curves(out.with_name("wakeword_det.png"), curves, chosen, summary["negative_hours"])]
    for word, per_level in curves.items():
        path = out.with_name(f"wakeword_det_{word}.png")
        pictures.append(det_curves(path, {word: per_level}, {k: v for k, v in chosen.items() if k == word},
                                   summary["negative_hours"]))  # fmt: skip
    return pictures


def markdown(summary: dict[str, object], seconds: float) -> str:
    """The report as a Markdown page."""
    lines = [
        "# Wake-word quality report",
        "",
        (
            f"Generated by `python -m scripts.wakeword_quality` in {seconds / 60:.1f} min. "
            if not summary.get("rejudged")
            else "Scored by a full run of `python -m scripts.wakeword_quality`, re-judged from its saved scores "
            "(`--from-scores`). "
        )
        + f"Negatives: {summary['negative_hours']:.2f} h ({summary['negative_speech_hours']:.2f} h of speech).",
        *(
            [
                "Scores are the device's wake-word runner's; openWakeWord's own `Model` scored every clip too: "
                f"largest difference {summary['reference_max_abs_difference']:.2g} over "
                f"{summary['frames_scored']} frames x 5 words."
            ]
            if "reference_max_abs_difference" in summary
            else []
        ),
        "False-reject rate (FRR) = share of positive clips with no detection. FA/h = false accepts per hour "
        "of negatives. Cross = clean positives of *other* words that fired this word.",
        "",
        "![DET curves: false rejects against false accepts per hour, per word and noise level](wakeword_det.png)",
        "",
        "Each curve sweeps the threshold (patience 1) for Piper's speech at one noise level (pink and white "
        "together); the dot is the rule chosen below, on clean speech. Down and left is better. One picture per "
        "word: `wakeword_det_<word>.png`.",
        "",
    ]
    rules = summary["rules"]
    if not isinstance(rules, dict):
        raise TypeError("summary without rules")
    lines += [
        "## Best rule per word",
        "",
        "Lowest worst-case false-reject rate on Piper speech (clean, 20 dB, 10 dB) with at most 0.5 false accepts per "
        "hour of negatives.",
        "",
        "| word | threshold | patience | worst FRR (Piper, >= 10 dB) | FA/h |",
        "|---|---|---|---|---|",
    ]
    for word, rec in summary.get("recommended", {}).items():  # type: ignore[attr-defined]
        lines.append(
            f"| {word} | {rec['threshold']} | {rec['patience_frames']} | "
            f"{100 * rec['worst_piper_frr_at_10db_or_better']:.0f} % | {rec['false_accepts_per_hour']:.2f} |"
        )
    lines.append("")
    for rule, per_word in rules.items():
        lines += [f"## {rule}", ""]
        header = (
            "| word | voice | clean | pink 20 | white 20 | pink 10 | white 10 | pink 5 | white 5 | FA (FA/h) | cross |"
        )
        lines += [header, "|---" * 11 + "|"]
        for word, stats in per_word.items():
            for voice in ("piper", "espeak"):
                frr = stats["frr"][voice]
                cells = [frr[k] for k in COLUMNS]
                fa = f"{stats['false_accepts']} ({stats['false_accepts_per_hour']:.2f})" if voice == "piper" else ""
                cross = str(stats["cross_word_accepts"]) if voice == "piper" else ""
                rates = " | ".join(f"{100 * c:.0f} %" for c in cells)
                lines.append(f"| {word} | {voice} | {rates} | {fa} | {cross} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    """Build the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("reports/wakeword_quality.md"))
    parser.add_argument("--from-scores", action="store_true", help="re-judge the scores saved by an earlier run")
    args = parser.parse_args()
    started = time.monotonic()
    scores_path = args.out.with_suffix(".scores.npz")
    difference = None
    if args.from_scores:
        clips = load_clips(scores_path)
    else:
        settings = WakeSettings(words=tuple(WakeWordSpec(model=w, patience_frames=1) for w in BUNDLED_WAKE_WORDS))
        detector = WakeWordDetector(settings)
        reference = reference_detector(settings)
        clips, difference = collect(detector, np.random.default_rng(2026), reference)
        np.savez_compressed(
            scores_path,
            **{f"{i}|{c.kind}|{c.word}|{c.voice}|{c.condition}|{c.seconds}": c.scores for i, c in enumerate(clips)},
        )
    summary = summarize(clips)
    summary["recommended"] = recommend(summary)
    if difference is not None:
        summary["reference_max_abs_difference"] = difference
        summary["frames_scored"] = sum(len(c.scores) for c in clips)
    elif args.out.with_suffix(".json").exists():
        # Re-judged: what the scoring run measured still holds for these scores.
        earlier = json.loads(args.out.with_suffix(".json").read_text())
        for key in ("reference_max_abs_difference", "frames_scored"):
            if key in earlier:
                summary[key] = earlier[key]
        summary["rejudged"] = True
    elapsed = time.monotonic() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown(summary, elapsed))
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=1))
    pictures = draw(args.out, clips, summary)
    print(f"wrote {args.out} and {len(pictures)} pictures ({elapsed / 60:.1f} min)")


if __name__ == "__main__":
    main()

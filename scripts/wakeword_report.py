"""The wake-word report from scored clips: false rejects and false accepts per hour for
every threshold and patience, the recommended settings, DET curves and the Markdown.
`scripts.wakeword_quality` scores the clips; this module only judges them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from firmware.wake import BUNDLED_WAKE_WORDS

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
PATIENCES = (1, 2, 3, 4)
COLUMNS = ("clean", "pink 20 dB", "white 20 dB", "pink 10 dB", "white 10 dB", "pink 5 dB", "white 5 dB")


@dataclass
class Clip:
    """Per-frame scores of one clip for every word."""

    kind: str  # "positive" or "negative"
    word: str | None  # the wake word a positive contains
    voice: str  # "piper" or "espeak"
    condition: str  # "clean", "pink 10 dB", ...
    seconds: float
    scores: npt.NDArray[np.float32]  # frames x words


def detections(scores: npt.NDArray[np.float32], threshold: float, patience: int, refractory_frames: int = 25) -> int:
    """How many times one word's score trace fires under a threshold and patience rule."""
    count, run, cooldown = 0, 0, 0
    for value in scores:
        cooldown = max(cooldown - 1, 0)
        run = run + 1 if value >= threshold else 0
        if run >= patience and cooldown == 0:
            count, run, cooldown = count + 1, 0, refractory_frames
    return count


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

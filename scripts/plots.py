"""Pictures for the reports: DET curves of the wake words, and latency histograms.

Drawn with matplotlib's Agg backend (files only, no display), from figures the report
scripts computed; the PNGs go beside the reports they illustrate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")  # before pyplot: no display on a server or in CI

import matplotlib.pyplot as plt  # after choosing the backend

NOISE_STYLES = {"clean": "-", "20 dB": "--", "10 dB": "-.", "5 dB": ":"}


def det_curves(
    path: Path,
    curves: Mapping[str, Mapping[str, Sequence[tuple[float, float]]]],
    chosen: Mapping[str, tuple[float, float]],
    negative_hours: float,
) -> Path:
    """One panel per wake word: false-reject rate against false accepts per hour, one line
    per noise level; `chosen` marks each word's recommended operating point."""
    words = list(curves)
    columns = min(3, len(words))
    rows = -(-len(words) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows), squeeze=False)
    floor = 0.5 / negative_hours  # one half of a false accept in all the negatives: where "none" is drawn
    for panel, word in zip(axes.flat, words, strict=False):
        for noise, points in curves[word].items():
            xs = [max(fa, floor) for fa, _frr in points]
            ys = [100 * frr for _fa, frr in points]
            panel.plot(xs, ys, NOISE_STYLES.get(noise, "-"), label=noise, linewidth=1.6)
        if word in chosen:
            fa, frr = chosen[word]
            panel.plot([max(fa, floor)], [100 * frr], "ko", markersize=5, label="chosen (clean)")
        panel.axvline(floor, color="0.5", linewidth=0.8, linestyle=":")
        panel.annotate(f"none in {negative_hours:.1f} h", (floor, 50), xytext=(3, 0), textcoords="offset points",
                       fontsize=7, color="0.4", rotation=90, va="center")  # fmt: skip
        panel.set_xscale("log")
        panel.set_xlim(floor * 0.8, 100)
        panel.set_ylim(-2, 102)
        panel.set_title(word.replace("_", " "))
        panel.set_xlabel("false accepts per hour")
        panel.set_ylabel("false rejects (%)")
        panel.grid(True, which="both", alpha=0.3)
    for panel in list(axes.flat)[len(words) :]:
        panel.axis("off")
    axes.flat[0].legend(fontsize=8, loc="upper right")
    figure.suptitle("Wake words: DET curves by noise level (Piper speech; threshold swept)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def latency_histogram(path: Path, latencies_ms: Sequence[float], title: str, window_ms: float | None = None) -> Path:
    """A histogram of latencies with p50 and p99 marked (and the silence window, if any)."""
    ordered = sorted(latencies_ms)
    p50, p99 = (float(np.percentile(ordered, q)) for q in (50, 99))  # as the benchmarks compute them
    figure, axis = plt.subplots(figsize=(6.4, 3.6))
    axis.hist(ordered, bins=min(30, max(5, len(ordered) // 2)), color="#2456d3", alpha=0.8)
    for value, label, style in ((p50, "p50", "--"), (p99, "p99", ":")):
        axis.axvline(value, color="k", linestyle=style, linewidth=1.2)
        axis.annotate(f"{label} {value:.0f} ms", (value, axis.get_ylim()[1] * 0.9), xytext=(4, 0),
                      textcoords="offset points", fontsize=8)  # fmt: skip
    if window_ms is not None:
        axis.axvline(window_ms, color="#b42318", linewidth=1.0)
        axis.annotate(f"silence window {window_ms:.0f} ms", (window_ms, axis.get_ylim()[1] * 0.5),
                      xytext=(4, 0), textcoords="offset points", fontsize=8, color="#b42318")  # fmt: skip
    axis.set_xlabel("ms")
    axis.set_ylabel("requests")
    axis.set_title(f"{title} (n = {len(ordered)})")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def stage_points(path: Path, families: Mapping[str, Sequence[tuple[float, float, str]]], negative_hours: float) -> Path:
    """Operating points of the wake-detection designs: share of positives lost against false
    accepts per hour that reach storage; one line per design family, its points labelled
    (the cutoff each was measured at)."""
    figure, panel = plt.subplots(figsize=(7.0, 4.6))
    floor = 0.5 / negative_hours
    for family, points in families.items():
        xs = [max(fa, floor) for fa, _lost, _label in points]
        ys = [100 * lost for _fa, lost, _label in points]
        panel.plot(xs, ys, "o-" if len(points) > 1 else "ks", label=family, linewidth=1.4, markersize=5)
        for x, y, (_fa, _lost, label) in zip(xs, ys, points, strict=True):
            if label:
                panel.annotate(label, (x, y), xytext=(4, 3), textcoords="offset points", fontsize=7)
    panel.set_xscale("log")
    panel.set_xlabel("false accepts per hour that reach storage")
    panel.set_ylabel("positives lost (%)")
    panel.grid(True, which="both", alpha=0.3)
    panel.legend(fontsize=8)
    panel.set_title("Wake-word stages: every clip of the report, all words and conditions")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path

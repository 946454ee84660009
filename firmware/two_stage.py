"""openWakeWord as the second stage: woken only when microWakeWord heard a word.

The confirmer keeps the last `confirm_seconds` of audio. When the first stage hears a word,
openWakeWord replays that audio from a clean start, then stays live for a few more frames
(the two models need not peak on the same frame: microWakeWord tends to fire as the word
ends, openWakeWord a frame or two later). The word is confirmed when openWakeWord's score
holds at or above its threshold for its patience, in the replayed or live frames. Scores
of the first replayed frames are not judged: openWakeWord's buffers are still filling
there, and a filling buffer can score high on abrupt audio.

Where a word is always scored by openWakeWord anyway (`always_live`), the runner is fed
every frame and its recent scores are the history: nothing is replayed.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
import numpy.typing as npt

from contract.audio import FRAME_SAMPLES, FRAME_SECONDS

# openWakeWord's melspectrogram and embedding windows span about 2 s; the first 0.8 s of a
# replay fills them and is not judged.
UNJUDGED_FRAMES = 10
# How long openWakeWord stays live after the first stage fired (0.48 s).
LIVE_FRAMES = 6


class Confirmer:
    """openWakeWord's recent scores, replayed on demand or kept live."""

    def __init__(self, runner: Any, confirm_seconds: float, *, always_live: bool) -> None:
        self._runner = runner
        self._always_live = always_live
        frames = round(confirm_seconds / FRAME_SECONDS)
        self._audio: deque[npt.NDArray[np.int16]] = deque(maxlen=frames)
        self._history: deque[dict[str, float]] = deque(maxlen=frames + LIVE_FRAMES)
        self._judged_from = 0  # index into the history of the first judged frame
        self._live_frames = 0

    @property
    def live(self) -> bool:
        """Whether openWakeWord is being fed frames now."""
        return self._always_live or self._live_frames > 0

    def reset(self, warmup_frames: int) -> None:
        """Forget all audio; an always-live runner is warmed with silence, as after a start."""
        self._runner.reset()
        self._audio.clear()
        self._history.clear()
        self._live_frames = 0
        if self._always_live:
            silence = np.zeros(FRAME_SAMPLES, dtype=np.int16)
            for _ in range(warmup_frames):
                self._runner.predict(silence)

    def push(self, samples: npt.NDArray[np.int16]) -> dict[str, float]:
        """Keep one frame; score it when live (the scores, or {} when not)."""
        if not self._always_live:
            self._audio.append(samples.copy())
        if not self.live:
            return {}
        scores: dict[str, float] = self._runner.predict(samples)
        self._history.append(scores)
        self._live_frames = max(0, self._live_frames - 1)
        return scores

    def wake(self) -> None:
        """The first stage heard a word: make sure openWakeWord has scored the recent audio."""
        if self._always_live:
            return
        if self._live_frames == 0:
            self._runner.reset()
            self._history.clear()
            for samples in self._audio:
                self._history.append(self._runner.predict(samples))
            self._judged_from = UNJUDGED_FRAMES
        self._live_frames = LIVE_FRAMES

    def best(self, word: str, threshold: float, patience_frames: int) -> float | None:
        """The highest score of a run of `patience_frames` at or above `threshold`, or None."""
        judged = list(self._history)[0 if self._always_live else self._judged_from :]
        best, run = None, 0
        for scores in judged:
            score = float(scores.get(word, 0.0))
            run = run + 1 if score >= threshold else 0
            if run >= patience_frames:
                best = max(best or 0.0, score)
        return best

    def forget(self) -> None:
        """A word was detected: its scores must not confirm it again."""
        self._history.clear()
        self._judged_from = 0

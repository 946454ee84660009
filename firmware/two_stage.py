"""openWakeWord as the second stage: woken only when microWakeWord hears a word.

The confirmer keeps the last `confirm_seconds` of audio. When the first stage hears a word
and openWakeWord is not running, openWakeWord replays that audio from a clean start; it
then stays live while the first stage keeps hearing the word and for `LIVE_FRAMES` after
(the two models need not peak on the same frame: microWakeWord tends to fire as the word
ends, openWakeWord a frame or two later). A word is confirmed when openWakeWord's score
holds at or above its threshold for its patience within the frames judged for that
hearing. The first `UNJUDGED_FRAMES` of a replay are never judged: openWakeWord's
melspectrogram and embedding windows are still filling there, and a filling window can
score high on audio that scores low live (measured against live scores of the same
frames: 0.76 apart after 10 frames, 0.05 after 20, none after 24).

Where a word is always scored by openWakeWord anyway (`always_live`), the runner is fed
every frame and nothing is replayed; the same window of frames is judged.

Frames are numbered from the last reset, so a confirmation used up once (a wake, or one
suppressed while the speaker was busy) can never be judged again, by any word.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
import numpy.typing as npt

from contract.audio import FRAME_SAMPLES, FRAME_SECONDS

UNJUDGED_FRAMES = 20  # 1.6 s
# How long openWakeWord stays live after the first stage last heard the word (0.48 s).
LIVE_FRAMES = 6


class Confirmer:
    """openWakeWord's recent scores, replayed on demand or kept live."""

    def __init__(self, runner: Any, confirm_seconds: float, *, always_live: bool) -> None:
        self._runner = runner
        self._always_live = always_live
        self._window = round(confirm_seconds / FRAME_SECONDS)
        if self._window <= UNJUDGED_FRAMES:
            raise ValueError(f"confirm_seconds must exceed {UNJUDGED_FRAMES * FRAME_SECONDS:.1f} s")
        self._audio: deque[npt.NDArray[np.int16]] = deque(maxlen=self._window)
        # (frame number, scores): enough for a whole window and the live frames after it.
        self._history: deque[tuple[int, dict[str, float]]] = deque(maxlen=2 * self._window + LIVE_FRAMES)
        self._frame = 0  # the number of the newest frame
        self._judged_from = 0  # no frame before this may confirm anything
        self._live_until = 0  # the last frame openWakeWord is fed (when not always live)

    @property
    def frame(self) -> int:
        """The number of the newest frame (1 for the first after a reset)."""
        return self._frame

    @property
    def live(self) -> bool:
        """Whether openWakeWord scores the next frame."""
        return self._always_live or self._frame < self._live_until

    def reset(self, warmup_frames: int) -> None:
        """Forget all audio, then `warmup_frames` of silence: fed to an always-live runner, or
        kept for a replay."""
        self._runner.reset()
        self._audio.clear()
        self._history.clear()
        self._frame = self._judged_from = self._live_until = 0
        silence = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        for _ in range(warmup_frames):
            if self._always_live:
                self._runner.predict(silence)
            else:  # as if the speaker had heard silence before: a replay right after a start is whole
                self._audio.append(silence)

    def push(self, samples: npt.NDArray[np.int16]) -> dict[str, float]:
        """Keep one frame; score it when live (the scores, or {} when not)."""
        live = self.live
        self._frame += 1
        if not self._always_live:
            self._audio.append(samples.copy())
        if not live:
            return {}
        scores: dict[str, float] = self._runner.predict(samples)
        self._history.append((self._frame, scores))
        return scores

    def heard(self) -> int:
        """The first stage hears a word in the newest frame: make sure openWakeWord has scored
        the recent audio and keeps scoring. Returns the first frame judged for this hearing."""
        if not self.live:
            # Replay from a clean start. Frames before the window's last `UNJUDGED_FRAMES`
            # only fill openWakeWord's buffers.
            self._runner.reset()
            self._history.clear()  # older live scores would sit beside the replayed ones
            first = self._frame - len(self._audio) + 1
            for number, samples in enumerate(self._audio, start=first):
                self._history.append((number, self._runner.predict(samples)))
            self._judged_from = max(self._judged_from, first + UNJUDGED_FRAMES)
        self._live_until = self._frame + LIVE_FRAMES + 1
        return max(self._judged_from, self._frame - self._window + UNJUDGED_FRAMES + 1)

    def best(self, word: str, threshold: float, patience_frames: int, since: int) -> float | None:
        """The highest score of a run of `patience_frames` at or above `threshold`, counting
        only frames from `since` on (and none used up), or None."""
        start = max(since, self._judged_from)
        best, run = None, 0
        for number, scores in self._history:
            if number < start:
                continue
            score = float(scores.get(word, 0.0))
            run = run + 1 if score >= threshold else 0
            if run >= patience_frames:
                best = max(best or 0.0, score)
        return best

    def use_up(self) -> None:
        """A confirmation was used (a wake, or one ignored while busy): nothing heard up to
        now may confirm again, whether from the scores kept or from audio replayed."""
        self._judged_from = self._frame + 1
        self._audio.clear()

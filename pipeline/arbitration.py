"""One speaker answers when several devices of a household wake on the same request.

The contest lives in the database (`contest_entries`, see `pipeline.store`), so it is one
contest whichever workers the speakers' requests reach. This module holds its rules,
pure and fed the database's clock:

* **Who enters.** A household's live request (captured moments ago, admitted for the
  first time) joins the household's contest opened within `window_seconds`, or opens
  one. A resend of a request captured earlier never contests a live one (it is served
  alone), and a device that opened or joined more than `contests_per_minute` contests in
  the last minute is served alone too: a stream of fake wakes cannot hold a household's
  requests hostage.
* **Who wins.** Decided once the window is closed and every entrant has finished, or
  `settle_seconds` after the first entrant that spoke finished (the speakers heard the
  same words and end together; a straggler is not waited for). Only an entrant that
  *spoke* can win (it ended on silence or at its length limit, with audio kept): one
  that ended with no speech, muted, abandoned or cancelled never takes a request from
  another, so a silent or lying speaker cannot make a household's request vanish. Among
  those, the cloud ranks by what it measured itself: a recognized transcript first, then
  the speech level it received; a device's claimed wake score is not used.
* **The others** are cancelled, and kept nothing: they streamed their audio to their
  own workers until the decision, so whichever one wins, its request is whole. If nobody
  spoke, nobody cancels anybody: each keeps its own record.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta


class Outcome(enum.StrEnum):
    """What a contest decided for one entrant."""

    ANSWERS = "answers"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class ContestRules:
    """The numbers of arbitration, from the ingest settings."""

    window_seconds: float
    settle_seconds: float
    give_up_seconds: float  # after the first finish: a worker that died never reports
    # A live start arrives about a pre-roll (1.5 s) after its capture began; a resend after
    # its worker was lost comes at least the device's 2 s grace later. Between the two: a
    # resend never contests a live request (a device with a longer pre-roll answers alone).
    live_seconds: float = 3.0
    contests_per_minute: int = 12


@dataclass(frozen=True)
class Entry:
    """One entrant as the database holds it."""

    utterance_id: str
    entered_at: datetime
    finished_at: datetime | None = None
    spoke: bool = False
    recognized: bool = False
    level_db: float = -math.inf


def is_live(capture_started_at: datetime, received_at: datetime, rules: ContestRules) -> bool:
    """Whether a start is a request being spoken now (a resend of an older one is not)."""
    return abs((received_at - capture_started_at).total_seconds()) <= rules.live_seconds


def decide(
    entries: Sequence[Entry], opened_at: datetime, now: datetime, rules: ContestRules
) -> dict[str, Outcome] | None:
    """Every entrant's outcome, or None while the contest must still wait."""
    if now < opened_at + timedelta(seconds=rules.window_seconds) or not entries:
        return None  # another speaker may still join
    finished = [e for e in entries if e.finished_at is not None]
    spoke = [e for e in finished if e.spoke]
    if len(finished) < len(entries):
        settled = spoke and now >= min(e.finished_at for e in spoke if e.finished_at) + timedelta(
            seconds=rules.settle_seconds
        )
        given_up = finished and now >= min(e.finished_at for e in finished if e.finished_at) + timedelta(
            seconds=rules.give_up_seconds
        )
        if not (settled or given_up):
            return None
    if not spoke:
        return {e.utterance_id: Outcome.ANSWERS for e in entries}
    winner = max(spoke, key=lambda e: (e.recognized, e.level_db, -e.entered_at.timestamp()))
    return {e.utterance_id: Outcome.ANSWERS if e is winner else Outcome.CANCELLED for e in entries}


def speech_level_db(pcm: bytes) -> float:
    """The RMS level of 16-bit PCM in dB full scale (-inf for silence or nothing)."""
    import numpy as np

    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float64)
    if samples.size == 0:
        return -math.inf
    rms = math.sqrt(float(np.mean(samples * samples)))
    return 20.0 * math.log10(rms / 32768.0) if rms > 0 else -math.inf

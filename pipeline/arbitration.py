"""One speaker answers: when several devices of a household wake on the same request.

Pure and fed the cloud's own clock. The first start of a household opens a contest;
every start of that household within `window_seconds` joins it. The contest is decided
`decide_after_seconds` after it opened: the best wake score wins (the earliest on a
tie), everyone else loses at once. A start that arrives after the decision, still inside
the window, loses on arrival: the winner is already streaming and answering, and a
request must not change hands half-way. Deciding early is what keeps a loser's stream
short (it stops within the decision time plus a round trip), at the price of a late
device with a better score losing; devices that hear the same words wake within tens of
milliseconds of each other.

A wake score is a device's claim; at worst a device of the household wins its own
household's contests. It can never make another household's speaker stop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from uuid import UUID


@dataclass(frozen=True)
class Entrant:
    """One device's request in a contest."""

    utterance_id: UUID
    device_id: str
    score: float
    arrived_at: float


@dataclass
class Contest:
    """The requests one household started within one window."""

    household_id: str
    opened_at: float
    entrants: list[Entrant] = field(default_factory=list)
    winner: Entrant | None = None

    @property
    def decided(self) -> bool:
        """Whether the winner is known."""
        return self.winner is not None


class Arbiter:
    """Contests by household; one per household with a request in the last window."""

    def __init__(self, window_seconds: float, decide_after_seconds: float) -> None:
        self._window_seconds = window_seconds
        self._decide_after_seconds = decide_after_seconds
        self._contests: dict[str, Contest] = {}

    @property
    def decide_after_seconds(self) -> float:
        """How long after a contest opens it is decided."""
        return self._decide_after_seconds

    def enter(self, household_id: str, entrant: Entrant) -> tuple[Contest | None, bool]:
        """Join (or open) the household's contest; returns it and whether this one opened it.

        A contest already decided means the entrant lost: see `lost`. A second request of a
        device already in the contest is no rival (one speaker cannot hear one request twice):
        it is not contested (None), and its own limits apply.
        """
        contest = self._contests.get(household_id)
        opened = contest is None or entrant.arrived_at >= contest.opened_at + self._window_seconds
        if contest is None or opened:
            contest = Contest(household_id, entrant.arrived_at)
            self._contests[household_id] = contest
        elif any(e.device_id == entrant.device_id for e in contest.entrants):
            return None, False
        contest.entrants.append(entrant)
        return contest, opened

    @staticmethod
    def lost(contest: Contest, entrant: Entrant) -> bool:
        """Whether `entrant` lost a decided contest."""
        return contest.winner is not None and contest.winner.utterance_id != entrant.utterance_id

    def decide(self, contest: Contest) -> list[Entrant]:
        """Pick the winner now; returns the losers."""
        if contest.winner is None:
            contest.winner = max(contest.entrants, key=lambda e: (e.score, -e.arrived_at))
        return [e for e in contest.entrants if e.utterance_id != contest.winner.utterance_id]

    @property
    def window_seconds(self) -> float:
        """How long a contest takes new entrants."""
        return self._window_seconds

    def close(self, contest: Contest) -> None:
        """The window is over: forget the contest (called by whoever keeps the time)."""
        if self._contests.get(contest.household_id) is contest:
            del self._contests[contest.household_id]

    def __len__(self) -> int:
        return len(self._contests)

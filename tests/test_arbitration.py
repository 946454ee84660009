"""One speaker of a household answers: the arbiter, fed the cloud's clock."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from pipeline.arbitration import Arbiter, Entrant
from pipeline.settings import IngestSettings


def entrant(device: str, score: float, at: float) -> Entrant:
    return Entrant(uuid.uuid4(), device, score, at)


def test_the_best_wake_score_answers_and_a_tie_goes_to_the_first() -> None:
    arbiter = Arbiter(window_seconds=1.0, decide_after_seconds=0.15)
    kitchen, hall, den = entrant("kitchen", 0.91, 10.00), entrant("hall", 0.99, 10.05), entrant("den", 0.99, 10.10)
    contest, opened = arbiter.enter("parks", kitchen)
    assert opened and contest is not None
    for other in (hall, den):
        assert arbiter.enter("parks", other) == (contest, False)
    assert arbiter.decide(contest) == [kitchen, den]
    assert contest.winner == hall
    assert arbiter.decide(contest) == [kitchen, den]  # decided once


def test_a_late_speaker_loses_on_arrival_and_the_window_closes() -> None:
    arbiter = Arbiter(window_seconds=1.0, decide_after_seconds=0.15)
    first = entrant("kitchen", 0.5, 0.0)
    contest, _ = arbiter.enter("parks", first)
    assert contest is not None
    arbiter.decide(contest)
    late = entrant("hall", 1.0, 0.6)  # a better score, but the answer is under way
    assert arbiter.enter("parks", late) == (contest, False) and Arbiter.lost(contest, late)
    assert not Arbiter.lost(contest, first)
    again, opened = arbiter.enter("parks", entrant("hall", 0.7, 1.2))  # past the window: a new request
    assert opened and again is not contest
    arbiter.close(contest)  # the old window's timer, late: the new contest stays
    assert len(arbiter) == 1
    arbiter.close(again)
    assert len(arbiter) == 0


def test_households_and_a_speakers_second_request_are_no_rivals() -> None:
    arbiter = Arbiter(window_seconds=1.0, decide_after_seconds=0.15)
    parks, _ = arbiter.enter("parks", entrant("kitchen", 0.9, 0.0))
    neighbours, opened = arbiter.enter("lees", entrant("flat", 0.95, 0.01))
    assert opened and neighbours is not parks
    assert arbiter.enter("parks", entrant("kitchen", 1.0, 0.1)) == (None, False)
    assert parks is not None and len(parks.entrants) == 1


def test_the_decision_comes_within_the_window() -> None:
    with pytest.raises(ValidationError, match="arbitration_decide_seconds"):
        IngestSettings(arbitration_window_seconds=0.1, arbitration_decide_seconds=0.2)

"""The rules of a household contest, pure: who enters, when it is decided, who answers."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np

from pipeline.arbitration import ContestRules, Entry, Outcome, decide, is_live, speech_level_db

RULES = ContestRules(window_seconds=1.0, settle_seconds=0.5, give_up_seconds=20.0)
T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_nothing_is_decided_while_the_window_is_open_or_a_speaker_still_streams() -> None:
    near = Entry("near", at(0.0), finished_at=at(0.8), spoke=True, level_db=-20)
    assert decide([near], at(0.0), at(0.9), RULES) is None  # another speaker may still join
    assert decide([near], at(0.0), at(1.0), RULES) == {"near": Outcome.ANSWERS}
    far = Entry("far", at(0.1))  # still streaming
    assert decide([near, far], at(0.0), at(1.2), RULES) is None
    # The speakers heard the same words: once the first that spoke has ended, a straggler
    # is waited for only `settle_seconds`.
    assert decide([near, far], at(0.0), at(1.3), RULES) == {"near": Outcome.ANSWERS, "far": Outcome.CANCELLED}


def test_the_louder_speech_the_cloud_received_answers_and_a_recognized_one_comes_first() -> None:
    near = Entry("near", at(0.05), at(3.0), spoke=True, level_db=-18)
    far = Entry("far", at(0.0), at(3.0), spoke=True, level_db=-30)
    assert decide([far, near], at(0.0), at(3.0), RULES) == {"near": Outcome.ANSWERS, "far": Outcome.CANCELLED}
    heard = Entry("far", at(0.0), at(3.0), spoke=True, recognized=True, level_db=-30)
    assert decide([heard, near], at(0.0), at(3.0), RULES) == {"far": Outcome.ANSWERS, "near": Outcome.CANCELLED}
    tie = Entry("near", at(0.05), at(3.0), spoke=True, level_db=-30)
    assert decide([tie, far], at(0.0), at(3.0), RULES) == {"far": Outcome.ANSWERS, "near": Outcome.CANCELLED}


def test_a_speaker_that_did_not_speak_never_takes_the_request() -> None:
    # A loud liar that ended with no speech, muted or abandoned: the honest speaker answers.
    liar = Entry("liar", at(0.0), at(0.5), spoke=False, level_db=0.0)
    speaking = Entry("honest", at(0.2))
    assert decide([liar, speaking], at(0.0), at(1.0), RULES) is None  # the honest one still speaks
    honest = Entry("honest", at(0.2), at(3.0), spoke=True, level_db=-35)
    assert decide([liar, honest], at(0.0), at(3.0), RULES) == {"liar": Outcome.CANCELLED, "honest": Outcome.ANSWERS}
    # Nobody spoke: nobody cancels anybody (each keeps its own record).
    quiet = Entry("quiet", at(0.2), at(4.0), spoke=False)
    assert decide([liar, quiet], at(0.0), at(4.0), RULES) == {"liar": Outcome.ANSWERS, "quiet": Outcome.ANSWERS}


def test_a_contest_whose_other_worker_died_is_given_up_on() -> None:
    silent = Entry("silent", at(0.0), at(4.0), spoke=False)
    vanished = Entry("vanished", at(0.1))  # its worker died; its device resends to another
    assert decide([silent, vanished], at(0.0), at(23.9), RULES) is None
    assert decide([silent, vanished], at(0.0), at(24.0), RULES) == {
        "silent": Outcome.ANSWERS,
        "vanished": Outcome.ANSWERS,
    }


def test_only_a_request_being_spoken_now_is_live() -> None:
    assert is_live(at(0.0), at(1.6), RULES)  # the pre-roll, then the start
    assert not is_live(at(0.0), at(3.5), RULES)  # the earliest resend after a lost worker
    assert not is_live(at(0.0), at(30.0), RULES)  # captured long ago: a resend from an outbox
    assert not is_live(at(60.0), at(0.0), RULES)  # a clock far ahead is no live request either


def test_speech_level_is_measured_from_the_audio() -> None:
    full = (np.ones(1600) * 32767).astype("<i2").tobytes()
    half = (np.ones(1600) * 16384).astype("<i2").tobytes()
    assert abs(speech_level_db(full)) < 0.01
    assert abs(speech_level_db(half) - (-6.02)) < 0.05
    assert speech_level_db(b"") == -math.inf and speech_level_db(bytes(3200)) == -math.inf

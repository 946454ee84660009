"""Several pipeline workers on one broker, one of them SIGKILLed mid-utterance (issue 14)."""

from __future__ import annotations

from pathlib import Path

from scripts.loadtest import run_load


def test_three_workers_200_paced_utterances_one_worker_killed_nothing_lost(
    tmp_path: Path, database: str | None
) -> None:
    # 20 simulated speakers (the real device uplink each, its own MQTT 5 client and
    # identity), 10 Korean requests each, paced in real time with Poisson pauses; real
    # mosquitto, three real worker processes with the Korean Vosk model in grammar mode,
    # storing into one SQLite file or one PostgreSQL database.
    report = run_load(
        tmp_path, speakers=20, workers=3, utterances_per_speaker=10, mean_gap_seconds=1.5, kill_after=0.3,
        database=database,
    )  # fmt: skip
    summary = report.summary()
    assert report.killed is not None, summary
    # The killed worker held utterances whose speakers were mid-sentence: they were sent again.
    assert report.resends.get("worker_gone", 0) >= 1, summary
    assert report.utterances == 200, summary
    # Every one stored exactly once, confirmed to its device, with its tag and a transcript.
    assert (report.stored, report.lost, report.stored_twice) == (200, 0, 0), summary
    assert (report.wrong_tag, report.without_transcript) == (0, 0), summary

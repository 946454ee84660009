"""Group commit: saves that wait together share one commit, each answered with its own
result, and only once that commit is durable (on both engines, real databases)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.clip_queries import forget, forget_household_before
from pipeline.errors import ClipRejected, DatabaseUnavailable, TextWithNul
from pipeline.group_commit import GroupCommitter
from pipeline.store import Clip, SqlClipStore
from tests.conftest import REPO
from tests.review_helpers import make_clip


def _queued_behind_a_busy_thread(
    committer: GroupCommitter, executor: ThreadPoolExecutor, clips: list[tuple[Clip, bytes | None]]
) -> list[Future[bool]]:
    """Submit every clip while the store's thread is busy, then let it go: one batch."""
    release = threading.Event()
    executor.submit(release.wait, 30)
    answers: list[Future[bool]] = []
    for clip, audio in clips:
        answers.append(Future())
        committer.submit(clip, audio, answers[-1])
    release.set()
    for answer in answers:
        answer.exception(timeout=60)
    return answers


def test_saves_waiting_together_share_one_commit_each_with_its_own_answer(tmp_path: Path, database: str | None) -> None:
    store = SqlClipStore(tmp_path, database=database)
    earlier = make_clip()
    assert store.save(earlier, bytes(3200))
    good = [make_clip(transcript=f"request {n}") for n in range(5)]
    clips: list[tuple[Clip, bytes | None]] = [(clip, bytes(range(256)) * 25) for clip in good]
    clips += [
        (make_clip(review_allowed=None), bytes(3200)),  # no consent tag: refused before the database
        (make_clip(transcript="a\x00b"), bytes(3200)),  # refused by the database layer, inside the batch
        (earlier, bytes(3200)),  # a resend of what is stored: "stored already"
        (make_clip(end_reason="muted"), None),  # a record without audio
        (make_clip(status="bogus"), bytes(3200)),  # refused by the database's own constraint
    ]
    with ThreadPoolExecutor(1) as executor:
        committer = GroupCommitter(store, executor)
        answers = _queued_behind_a_busy_thread(committer, executor, clips)
    assert (committer.commits, committer.largest_batch) == (1, len(clips))
    assert [answer.result() for answer in answers[:5]] == [True] * 5
    assert isinstance(answers[5].exception(), ClipRejected)
    assert isinstance(answers[6].exception(), TextWithNul)
    assert answers[7].result() is False and answers[8].result() is True
    assert isinstance(answers[9].exception(), store._db.value_errors)
    # Each clip kept exactly its own row and audio; the refused ones left nothing.
    assert store.count() == 1 + 5 + 1
    for clip in good:
        stored = store.get(clip.utterance_id)
        assert stored is not None and stored.transcript == clip.transcript and stored.audio_bytes == 6400
        assert (store.audio(clip.utterance_id) or b"")[44:] == bytes(range(256)) * 25
    assert store.get(clips[6][0].utterance_id) is None
    muted = store.get(clips[8][0].utterance_id)
    assert muted is not None and muted.audio_bytes is None and store.audio(muted.utterance_id) is None


def test_a_batch_is_bounded_by_clips_and_audio_and_every_save_is_answered(tmp_path: Path) -> None:
    store = SqlClipStore(tmp_path)
    clips: list[tuple[Clip, bytes | None]] = [(make_clip(), bytes(32000)) for _ in range(10)]
    with ThreadPoolExecutor(1) as executor:
        committer = GroupCommitter(store, executor, max_clips=4, max_audio_bytes=3 * 32000)
        answers = _queued_behind_a_busy_thread(committer, executor, clips)
    assert [answer.result() for answer in answers] == [True] * 10
    assert committer.largest_batch == 3 and committer.commits == 4 and store.count() == 10


def test_no_save_is_answered_before_its_commit(tmp_path: Path, database: str | None) -> None:
    answers: list[Future[bool]] = []
    seen_in_the_transaction: list[bool] = []
    store = SqlClipStore(
        tmp_path,
        database=database,
        crash_hook=lambda point: (
            point == "row_inserted" and seen_in_the_transaction.append(any(answer.done() for answer in answers))
        ),
    )
    with ThreadPoolExecutor(1) as executor:
        committer = GroupCommitter(store, executor)
        release = threading.Event()
        executor.submit(release.wait, 30)
        for _ in range(3):
            answers.append(Future())
            committer.submit(make_clip(), bytes(3200), answers[-1])
        release.set()
        assert [answer.result(timeout=60) for answer in answers] == [True] * 3
    assert seen_in_the_transaction == [False, False, False]


def test_the_event_loop_side_waits_for_durability_and_sees_the_error(tmp_path: Path) -> None:
    store = SqlClipStore(tmp_path)

    async def scenario() -> tuple[list[bool], BaseException | None]:
        with ThreadPoolExecutor(1) as executor:
            committer = GroupCommitter(store, executor)
            saved = await asyncio.gather(*(committer.save(make_clip(), bytes(3200)) for _ in range(20)))
            try:
                await committer.save(make_clip(household_id="../etc"), bytes(3200))
            except ClipRejected as err:
                return list(saved), err
            return list(saved), None

    saved, refused = asyncio.run(scenario())
    assert saved == [True] * 20 and isinstance(refused, ClipRejected) and store.count() == 20


@pytest.mark.parametrize("point", ["row_inserted", "committed"])
def test_a_crash_inside_a_batch_keeps_all_of_it_or_none(tmp_path: Path, point: str, database: str | None) -> None:
    # The process dies (no cleanup) after the second clip's row, or after the commit:
    # the batch is one transaction, so its three clips are all stored or none is.
    ids = [uuid.uuid4() for _ in range(3)]
    script = textwrap.dedent(
        f"""
        import os, sys, uuid
        sys.path.insert(0, {str(REPO)!r})
        from pathlib import Path
        from pipeline.store import SqlClipStore
        from tests.review_helpers import make_clip
        rows = 0
        def crash(name):
            global rows
            rows += name == "row_inserted"
            if (name, rows) in (({point!r}, 2), ({point!r}, 3)):
                os._exit(17)
        store = SqlClipStore(Path({str(tmp_path)!r}), database={database!r}, crash_hook=crash)
        ids = [uuid.UUID(text) for text in {[str(i) for i in ids]!r}]
        store.save_many([(make_clip(utterance_id=i), bytes(3200)) for i in ids])
        """
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, timeout=60, check=False)
    assert done.returncode == 17
    store = SqlClipStore(tmp_path, database=database)
    audio_rows = store._db.execute("SELECT COUNT(*) FROM clip_audio").fetchone()[0]
    if point == "committed":
        assert store.count() == 3 and audio_rows == 3
        assert all(len(store.audio(i) or b"") == 44 + 3200 for i in ids)
    else:
        assert store.count() == 0 and audio_rows == 0
    assert store.save_many([(make_clip(utterance_id=i), bytes(3200)) for i in ids]) == [point != "committed"] * 3


def test_a_commit_that_fails_fails_every_clip_of_its_batch(tmp_path: Path) -> None:
    # PostgreSQL only: the server ends the store's connection in the middle of a batch.
    import psycopg

    from tests.postgres import fresh_database

    with fresh_database() as url:

        def end_the_connection(point: str) -> None:
            if point == "row_inserted" and not ended:
                ended.append(True)
                with psycopg.connect(url, autocommit=True) as admin:
                    admin.execute("SELECT pg_terminate_backend(%s)", (store._db._conn.info.backend_pid,))

        ended: list[bool] = []
        store = SqlClipStore(tmp_path, database=url, crash_hook=end_the_connection)
        clips: list[tuple[Clip, bytes | None]] = [(make_clip(), bytes(3200)) for _ in range(3)]
        with ThreadPoolExecutor(1) as executor:
            committer = GroupCommitter(store, executor)
            answers = _queued_behind_a_busy_thread(committer, executor, clips)
            errors = [answer.exception() for answer in answers]
            assert all(isinstance(error, (psycopg.Error, DatabaseUnavailable)) for error in errors), errors
            assert committer.commits == 0
            # The connection is opened again for the next batch, and the resends are stored.
            again = _queued_behind_a_busy_thread(committer, executor, clips)
        assert [answer.result() for answer in again] == [True] * 3
        assert store.count() == 3


def test_one_batch_applies_each_clip_its_own_ledger_rules(tmp_path: Path, database: str | None) -> None:
    # The batch is written with a few statements for all its clips: each one must still
    # get its own rules - a copy sent twice, "forget that", "delete everything I said today".
    store = SqlClipStore(tmp_path, database=database)
    now = datetime.now(UTC)
    twice = make_clip(transcript="first copy")
    forgotten = make_clip()
    today = make_clip(household_id="h-7", received_at=now - timedelta(minutes=5))
    later = make_clip(
        household_id="h-7", received_at=now + timedelta(minutes=5), capture_started_at=now + timedelta(minutes=5)
    )
    with store._db.writing() as db:
        forget(db, forgotten.device_id, [str(forgotten.utterance_id)], now)
        forget_household_before(db, "h-7", now, now - timedelta(hours=1))
    batch: list[tuple[Clip, bytes | None]] = [
        (twice, bytes(3200)),
        (forgotten, bytes(3200)),
        (replace(twice, transcript="second copy"), bytes(6400)),
        (today, bytes(3200)),
        (later, bytes(3200)),
    ]
    assert store.save_many(batch) == [True, True, False, True, True]  # a deleted clip is settled, not stored
    stored = store.get(twice.utterance_id)
    assert stored is not None and stored.transcript == "first copy" and stored.audio_bytes == 3200
    assert store.get(forgotten.utterance_id) is None and store.get(today.utterance_id) is None
    assert store.get(later.utterance_id) is not None
    assert store.count() == 2


def test_a_save_after_the_store_thread_has_stopped_is_still_answered(tmp_path: Path) -> None:
    # A stream that finishes while the worker shuts down: its executor takes no more tasks.
    # The save is committed on the caller's thread rather than left waiting for ever, and
    # so is the one after it.
    store = SqlClipStore(tmp_path)
    executor = ThreadPoolExecutor(1)
    executor.shutdown(wait=True)
    committer = GroupCommitter(store, executor)
    answers: list[Future[bool]] = [Future(), Future()]
    for answer in answers:
        committer.submit(make_clip(), bytes(3200), answer)
    assert [answer.result(timeout=10) for answer in answers] == [True, True]
    assert store.count() == 2

"""The clip store: consent tag NOT NULL, atomic audio + row, recovery after a crash."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import wave
from pathlib import Path

import pytest

from pipeline.errors import ClipRejected
from pipeline.store import SQLiteClipStore
from tests.conftest import REPO
from tests.review_helpers import make_clip


def test_saved_clip_reads_back_with_its_tag_and_audio(tmp_path: Path) -> None:
    store = SQLiteClipStore(tmp_path)
    clip = make_clip(review_allowed=False, consent_version=0)
    store.save(clip, bytes(32000))
    got = store.get(clip.utterance_id)
    assert got is not None and got.review_allowed is False and got.consent_version == 0
    assert got.duration_seconds == 1.0 and got.audio_path is not None
    with wave.open(str(got.audio_path)) as w:
        assert w.getnframes() == 16000 and w.getframerate() == 16000


@pytest.mark.parametrize(
    "changes",
    [
        {"review_allowed": None},
        {"review_allowed": "yes"},
        {"consent_version": None},
        {"consent_version": -1},
        {"household_id": "../etc"},
    ],
)
def test_a_clip_without_a_valid_tag_is_never_stored(tmp_path: Path, changes: dict[str, object]) -> None:
    store = SQLiteClipStore(tmp_path)
    with pytest.raises(ClipRejected):
        store.save(make_clip(**changes), bytes(3200))
    assert store.count() == 0
    assert [p for p in (tmp_path / "clips").rglob("*") if p.is_file()] == []


def test_the_database_itself_refuses_a_row_without_a_tag(tmp_path: Path) -> None:
    SQLiteClipStore(tmp_path).close()
    db = sqlite3.connect(tmp_path / "earmark.sqlite3")
    with pytest.raises(sqlite3.IntegrityError):
        db.execute(
            "INSERT INTO clips (utterance_id, device_id, household_id, capture_started_at, stored_at, "
            "duration_seconds, transcript, end_reason, status, wake_word, firmware_version, consent_version, "
            "audio_path) VALUES ('u', 'd', 'h', 't', 't', 1, '', 'silence', 'complete', 'alexa', '0', 1, 'p')"
        )


@pytest.mark.parametrize("point", ["audio_written", "renamed"])
def test_a_crash_never_leaves_audio_without_a_row(tmp_path: Path, point: str) -> None:
    # A child process dies (os._exit, no cleanup) at a point inside save(); reopening the
    # store must leave neither a row without audio nor audio without a row.
    script = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(REPO)!r})
        from pathlib import Path
        from pipeline.store import SQLiteClipStore
        from tests.review_helpers import make_clip
        def crash(name):
            if name == {point!r}:
                os._exit(17)
        store = SQLiteClipStore(Path({str(tmp_path)!r}), crash_hook=crash)
        store.save(make_clip(), bytes(3200))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, timeout=60, check=False)
    assert done.returncode == 17
    store = SQLiteClipStore(tmp_path)
    store.recover(grace_seconds=0)  # on open it spares files younger than a minute
    assert store.count() == 0
    assert [p for p in (tmp_path / "clips").rglob("*") if p.is_file()] == []
    clip = make_clip()
    store.save(clip, bytes(3200))
    saved = store.get(clip.utterance_id)
    assert saved is not None and saved.audio_path is not None and saved.audio_path.exists()


def test_enrollment(tmp_path: Path) -> None:
    store = SQLiteClipStore(tmp_path)
    assert store.device_household("kitchen-1") is None
    store.enroll("kitchen-1", "h-42")
    assert store.device_household("kitchen-1") == "h-42"
    with pytest.raises(ClipRejected):
        store.enroll("bad/id", "h-42")

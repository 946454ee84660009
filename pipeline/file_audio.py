"""Moving the audio of a file-backed store into the database, once.

Releases before this one kept each clip's audio as `clips/<household>/<utterance>.wav`,
a row's `audio_path` pointing at it, and `clips/.incoming/*.part` for saves under way.
At the first open of such a data directory: an interrupted save is finished or dropped
as those releases did; then, batch by batch, each file's PCM goes into `clip_audio` and
its row's `audio_bytes` in one transaction, and the files go after that commit (a crash
in between leaves files no row points at, removed at the end). The `clips/` folder goes
last; its absence is the mark that the move is done, so opening costs nothing after.
Several processes opening at once share the work: every batch is read under the writer
lock, so no row is moved twice and no file is removed before its audio is committed.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import wave
from pathlib import Path

from pipeline.database import Database

_LOGGER = logging.getLogger(__name__)

_BATCH_CLIPS = 200  # ~100 MB of audio at most per transaction


def move_file_audio(db: Database, data_dir: Path) -> int:
    """Move every clip's audio file under `data_dir/clips/` into the database; how many rows moved."""
    clips = data_dir / "clips"
    if not clips.is_dir():
        return 0
    _finish_interrupted_saves(db, data_dir)
    moved = 0
    while True:
        with db.writing():
            rows = db.execute(
                "SELECT utterance_id, audio_path FROM clips WHERE audio_path IS NOT NULL LIMIT ?", (_BATCH_CLIPS,)
            ).fetchall()
            files = []
            for utterance_id, audio_path in rows:
                path = data_dir / str(audio_path)
                pcm = _read_pcm(path)
                if pcm is None:
                    _LOGGER.warning("clip %s: its audio file is missing or unreadable; kept without", utterance_id)
                else:
                    db.execute(
                        "INSERT INTO clip_audio VALUES (?, ?) ON CONFLICT (utterance_id) DO NOTHING",
                        (utterance_id, pcm),
                    )
                db.execute(
                    "UPDATE clips SET audio_path = NULL, audio_bytes = ? WHERE utterance_id = ?",
                    (None if pcm is None else len(pcm), utterance_id),
                )
                files.append(path)
        for path in files:
            path.unlink(missing_ok=True)
        moved += len(rows)
        if len(rows) < _BATCH_CLIPS:
            break
    shutil.rmtree(clips, ignore_errors=True)
    if moved:
        _LOGGER.warning("moved the audio of %d clips from %s into the database", moved, clips)
    return moved


def _finish_interrupted_saves(db: Database, data_dir: Path) -> None:
    """A `.part` whose row was committed becomes the row's file; any other is dropped (never committed)."""
    for part in (data_dir / "clips" / ".incoming").glob("*.part"):
        utterance_id = part.name.split(".", 1)[0]
        row = db.execute("SELECT audio_path FROM clips WHERE utterance_id = ?", (utterance_id,)).fetchone()
        final = data_dir / str(row[0]) if row is not None and row[0] is not None else None
        with contextlib.suppress(FileNotFoundError):
            if final is not None and not final.exists():
                final.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                part.replace(final)
            else:
                part.unlink()


def _read_pcm(path: Path) -> bytes | None:
    """The samples of one of those releases' WAV files (16 kHz mono 16-bit), or None."""
    try:
        with wave.open(str(path), "rb") as wav:
            return wav.readframes(wav.getnframes())
    except (OSError, EOFError, wave.Error):
        return None

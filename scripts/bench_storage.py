"""What one stored clip costs in the database, row and audio (reported, never asserted).

    python -m scripts.bench_storage [--clips 2000] [--audio-seconds 3.0] [--database URL] [--out FILE]

Saves `--clips` clips through the real clip store (row + PCM in one transaction) into an
empty database and reports the growth per clip: the SQLite file (after a checkpoint) or
PostgreSQL's total relation sizes (tables, TOAST and indexes) of the clip store.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from pipeline.store import Clip, SqlClipStore

_TABLES = ("clips", "clip_audio", "utterances", "contest_entries")


def _size_bytes(store: SqlClipStore, data_dir: Path) -> int:
    db = store._db
    if db.dialect == "sqlite":
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return (data_dir / "earmark.sqlite3").stat().st_size
    return sum(int(db.execute("SELECT pg_total_relation_size(?)", (table,)).fetchone()[0]) for table in _TABLES)


def main() -> None:
    """Run the measurement and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=2000)
    parser.add_argument("--audio-seconds", type=float, default=3.0)
    parser.add_argument("--database", help="an empty PostgreSQL database (postgresql://…); default SQLite")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rng = np.random.default_rng(3)
    # Noise, not silence: PCM of speech does not compress, and neither does this.
    audio = (rng.normal(0, 3000, int(args.audio_seconds * 16000))).astype("<i2").tobytes()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        store = SqlClipStore(data_dir, database=args.database)
        before = _size_bytes(store, data_dir)
        for n in range(args.clips):
            now = datetime.now(UTC)
            store.save(
                Clip(
                    utterance_id=uuid.uuid4(),
                    device_id=f"d-{n % 100}",
                    household_id=f"h{n % 100}",
                    capture_started_at=now,
                    received_at=now,
                    stored_at=now,
                    duration_seconds=0.0,
                    transcript="turn on the kitchen lights",
                    end_reason="silence",
                    status="complete",
                    missing_chunks=0,
                    wake_word="alexa",
                    firmware_version="bench",
                    review_allowed=True,
                    consent_version=2,
                ),
                audio,
            )
        after = _size_bytes(store, data_dir)
        engine = store._db.dialect
        store.close()
    per_clip = (after - before) / args.clips
    report = {
        "engine": engine,
        "clips": args.clips,
        "audio_bytes_per_clip": len(audio),
        "database_bytes_per_clip": round(per_clip),
        "overhead_bytes_per_clip": round(per_clip - len(audio)),
    }
    text = json.dumps(report, indent=1)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()

"""Clip saves one commit each against group commit, beside the disk's own sync rate (reported, never asserted).

    python -m scripts.bench_group_commit [--seconds 10] [--streams 32] [--database URL] [--out FILE]

A save's cost is its commit's sync to disk. In one run, on one engine (SQLite in a
temporary directory, or the empty PostgreSQL database at `--database`):

- **the disk**: 4 KiB written and fsynced, back to back, in the store's directory: how
  many syncs a second this disk gives right now (it swings with other load: read the
  other figures against it);
- **one at a time**: `save()` in a loop (each save alone, nothing waiting beside it);
- **previous release, N streams**: N streams of one worker finishing at once, each save
  its own transaction on the store's one thread (`run_in_executor(io, store.save)`), as
  the worker did before group commit;
- **group commit, N streams**: the same N streams through `GroupCommitter`, as the
  worker saves now: the saves that wait while one commit syncs share the next.

Each save is a 1 s clip (32,000 bytes of PCM) and its row. Per phase: saves per second,
save latency p50/p99/max (a stream's wait for its durable answer), commits and clips per
commit; the machine's load average and the disk's sync rate are printed beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.group_commit import GroupCommitter
from pipeline.store import Clip, SqlClipStore

_AUDIO = bytes(32_000)  # 1 s of silence


def bench_clip(n: int, households: int = 1000) -> Clip:
    """The `n`th benchmark clip: a 1 s request of one of `households` (h00000, h00001, …)."""
    household = f"h{n % households:05d}"
    now = datetime.now(UTC)
    return Clip(
        utterance_id=uuid.uuid4(), device_id=f"d-{household}", household_id=household, capture_started_at=now,
        received_at=now, stored_at=now, duration_seconds=0.0, transcript="불 켜", end_reason="silence",
        status="complete", missing_chunks=0, wake_word="alexa", firmware_version="bench", review_allowed=True,
        consent_version=2,
    )  # fmt: skip


def disk_syncs_per_second(directory: Path, seconds: float) -> float:
    """fsyncs a second of a 4 KiB write, back to back, in `directory`."""
    path = directory / "fsync-probe"
    syncs = 0
    with open(path, "wb") as probe:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            probe.write(bytes(4096))
            probe.flush()
            os.fsync(probe.fileno())
            syncs += 1
    path.unlink()
    return syncs / seconds


def latency_figures(latencies: list[float], seconds: float, commits: int | None = None) -> dict[str, Any]:
    """Saves per second and save latency percentiles (and clips per commit, given commits)."""
    array = np.array(latencies)
    figures: dict[str, Any] = {
        "saves": len(latencies),
        "saves_per_second": round(len(latencies) / seconds, 1),
        "p50_ms": round(float(np.percentile(array, 50)) * 1000, 2),
        "p99_ms": round(float(np.percentile(array, 99)) * 1000, 2),
        "max_ms": round(float(array.max()) * 1000, 1),
        "over_100_ms": int((array > 0.1).sum()),
    }
    if commits is not None:
        figures["commits"] = commits
        figures["clips_per_commit"] = round(len(latencies) / max(commits, 1), 1)
    return figures


def one_at_a_time_latencies(
    store: SqlClipStore, seconds: float, clip_of: Callable[[int], Clip] = bench_clip
) -> list[float]:
    """`save()` back to back on this thread: each save's latency."""
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        clip = clip_of(len(latencies))
        began = time.perf_counter()
        store.save(clip, _AUDIO)
        latencies.append(time.perf_counter() - began)
    return latencies


def one_at_a_time(store: SqlClipStore, seconds: float) -> dict[str, Any]:
    """Figures of `one_at_a_time_latencies`."""
    latencies = one_at_a_time_latencies(store, seconds)
    return latency_figures(latencies, seconds, commits=len(latencies))


def stream_latencies(
    store: SqlClipStore, seconds: float, count: int, *, grouped: bool, clip_of: Callable[[int], Clip] = bench_clip
) -> tuple[list[float], int | None]:
    """`count` streams of one worker saving at once, through group commit or one commit each:
    each save's latency, and the commits group commit made (None for one commit each)."""
    latencies: list[float] = []

    async def stream(save: Any, deadline: float) -> None:
        while time.monotonic() < deadline:
            began = time.perf_counter()
            await save(clip_of(len(latencies)), _AUDIO)
            latencies.append(time.perf_counter() - began)

    async def run() -> int | None:
        with ThreadPoolExecutor(1, thread_name_prefix="clip-store") as io:
            loop = asyncio.get_running_loop()
            committer = GroupCommitter(store, io)

            async def one_commit_each(clip: Clip, audio: bytes) -> bool:
                return await loop.run_in_executor(io, store.save, clip, audio)

            save = committer.save if grouped else one_commit_each
            deadline = time.monotonic() + seconds
            await asyncio.gather(*(stream(save, deadline) for _ in range(count)))
            return committer.commits if grouped else None

    return latencies, asyncio.run(run())


def streams(store: SqlClipStore, seconds: float, count: int, *, grouped: bool) -> dict[str, Any]:
    """Figures of `stream_latencies`."""
    latencies, commits = stream_latencies(store, seconds, count, grouped=grouped)
    return latency_figures(latencies, seconds, commits=len(latencies) if commits is None else commits)


def main() -> None:
    """Measure, report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--streams", type=int, default=32, help="streams of one worker finishing at once")
    parser.add_argument("--database", help="an empty PostgreSQL database (postgresql://…); default SQLite")
    parser.add_argument("--out", type=Path, default=Path("reports/group_commit_bench.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        data_dir = Path(tmp)
        store = SqlClipStore(data_dir, database=args.database)
        syncs = disk_syncs_per_second(data_dir, min(args.seconds, 3.0))
        phases = {
            "one_at_a_time": one_at_a_time(store, args.seconds),
            "previous_release_streams": streams(store, args.seconds, args.streams, grouped=False),
            "group_commit_streams": streams(store, args.seconds, args.streams, grouped=True),
            "disk_syncs_per_second_after": round(disk_syncs_per_second(data_dir, min(args.seconds, 3.0)), 1),
        }
        engine = store._db.dialect
        store.close()
    figures = {
        "engine": engine,
        "streams": args.streams,
        "seconds_per_phase": args.seconds,
        "cpus": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "disk_syncs_per_second": round(syncs, 1),
        **phases,
    }
    grouped = figures["group_commit_streams"]["saves_per_second"]
    figures["group_commit_vs_previous"] = round(grouped / figures["previous_release_streams"]["saves_per_second"], 2)
    figures["group_commit_vs_disk_syncs"] = round(grouped / syncs, 2)
    print(json.dumps(figures, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()

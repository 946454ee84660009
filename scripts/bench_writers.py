"""Clip saves beside the review sampler and opt-outs, at 1M clips (reported, never asserted).

    python -m scripts.bench_writers [--clips 1000000] [--seconds 10] [--database URL] [--out FILE]

Builds the benchmark store of `scripts.bench_consent` (1M clips, 10,000 opted-in
households, 100k pooled), leaves the newest 10 % of clips for the sampler to read, then
runs the real clip store's `save()` (a 1 s WAV, fsynced, and its row) as fast as one
process can, for `--seconds` each: alone; while the sampler works through its backlog
(the registry, in this process, as the review service runs it); while households opt
out and back in; and alone again (shares are of the two alone phases' mean). Reported per
phase: saves per second, p50/p99/max save latency, and saves over 100 ms; for the
phases with company, how much work the company did. Opt-outs run twice: at 50 a second
(far above any real rate: 1 % of a million households in a day is 0.1/s) and back to
back (the worst case: two writers then share the lock about half and half).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.store import Clip, SqlClipStore
from review_opt_out.registry import Channel
from scripts.bench_consent import HOUSEHOLDS, build
from scripts.bench_group_commit import latency_figures


def _saver(data_dir: str, database: str | None, seconds: float, results: Any) -> None:
    """A pipeline's save loop in a process of its own; sends back every save's latency."""
    store = SqlClipStore(Path(data_dir), database=database)
    audio = bytes(32_000)  # 1 s of silence
    latencies = []
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        household = f"h{n % HOUSEHOLDS:05d}"
        now = datetime.now(UTC)
        clip = Clip(
            utterance_id=uuid.uuid4(), device_id=f"d-{household}", household_id=household, capture_started_at=now,
            received_at=now, stored_at=now, duration_seconds=0.0, transcript="불 켜", end_reason="silence",
            status="complete", missing_chunks=0, wake_word="alexa", firmware_version="bench", review_allowed=True,
            consent_version=2,
        )  # fmt: skip
        began = time.perf_counter()
        store.save(clip, audio)
        latencies.append(time.perf_counter() - began)
        n += 1
    store.close()
    results.put(latencies)


def _phase(data_dir: Path, database: str | None, seconds: float, company: Any = None) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    stop = threading.Event()
    done: dict[str, int] = {}
    worker = threading.Thread(target=company, args=(stop, done), daemon=True) if company else None
    saver = context.Process(target=_saver, args=(str(data_dir), database, seconds, results))
    saver.start()
    time.sleep(1.0)  # the saver's imports; the company starts with its saves
    if worker is not None:
        worker.start()
    latencies = results.get(timeout=seconds + 120)
    saver.join()
    stop.set()
    if worker is not None:
        worker.join()
    return {**latency_figures(latencies, seconds), **done}


def main() -> None:
    """Build, measure, report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--database", help="an empty PostgreSQL database (postgresql://…); default SQLite")
    parser.add_argument("--out", type=Path, default=Path("reports/writers_bench.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        registry, households = build(data_dir, args.clips, args.clips // 10, args.database)
        with registry.transaction() as db:  # the oldest 90 % were sampled before
            db.execute("INSERT INTO sampler_mark VALUES (1, ?)", (int(args.clips * 0.9),))
        if args.database is None:
            registry.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        else:
            registry.db.execute("VACUUM ANALYZE")  # as autovacuum would have by then: plans on real statistics
        print("built", args.clips, "clips", flush=True)

        def sampling(stop: threading.Event, done: dict[str, int]) -> None:
            done["sampled"] = 0
            while not stop.is_set():
                before = registry.db.execute("SELECT count(*) FROM review_considered").fetchone()[0]
                registry.sample(0.01, limit=5_000)
                done["sampled"] += registry.db.execute("SELECT count(*) FROM review_considered").fetchone()[0] - before

        def opting_out(per_second: float | None) -> Any:
            def run(stop: threading.Event, done: dict[str, int]) -> None:
                done["consent_changes"] = 0
                rng = random.Random(5)  # noqa: S311 - which household, not a secret
                allowed = dict.fromkeys(households, True)
                began = time.monotonic()
                while not stop.is_set():
                    if per_second is not None:
                        time.sleep(max(0.0, began + done["consent_changes"] / per_second - time.monotonic()))
                    household = rng.choice(households)
                    allowed[household] = not allowed[household]
                    registry.set_consent(household, allowed[household], "bench", Channel.APP)
                    done["consent_changes"] += 1

            return run

        figures = {
            "engine": registry.db.dialect,
            "clips": args.clips,
            "seconds_per_phase": args.seconds,
            "alone": _phase(data_dir, args.database, args.seconds),
            "during_sampling": _phase(data_dir, args.database, args.seconds, sampling),
            "during_opt_outs_50_per_second": _phase(data_dir, args.database, args.seconds, opting_out(50.0)),
            "during_opt_outs_back_to_back": _phase(data_dir, args.database, args.seconds, opting_out(None)),
            # Alone again: this shared machine's disk and the database's own background work
            # (PostgreSQL checkpoints the bulk load) move "alone" by itself; shares are of the mean.
            "alone_again": _phase(data_dir, args.database, args.seconds),
        }
        registry.close()
    alone = (figures["alone"]["saves_per_second"] + figures["alone_again"]["saves_per_second"]) / 2
    for phase in ("during_sampling", "during_opt_outs_50_per_second", "during_opt_outs_back_to_back"):
        figures[phase]["share_of_alone"] = round(figures[phase]["saves_per_second"] / alone, 2)
    print(json.dumps(figures, indent=2))
    args.out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()

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
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.store import Clip, SqlClipStore
from review_opt_out.registry import Channel
from scripts.bench_consent import HOUSEHOLDS, build
from scripts.bench_group_commit import bench_clip, latency_figures, one_at_a_time_latencies, stream_latencies


def _bench_clip(n: int) -> Clip:
    return bench_clip(n, HOUSEHOLDS)


def _saver(data_dir: str, database: str | None, seconds: float, streams: int, results: Any) -> None:
    """A pipeline's saves in a process of its own: one at a time, or `streams` of one worker
    through group commit; sends back every save's latency."""
    store = SqlClipStore(Path(data_dir), database=database)
    if streams:
        latencies, _commits = stream_latencies(store, seconds, streams, grouped=True, clip_of=_bench_clip)
    else:
        latencies = one_at_a_time_latencies(store, seconds, clip_of=_bench_clip)
    store.close()
    results.put(latencies)


def _phase(data_dir: Path, database: str | None, seconds: float, streams: int, company: Any = None) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    stop = threading.Event()
    done: dict[str, float] = {}
    worker = threading.Thread(target=company, args=(stop, done), daemon=True) if company else None
    saver = context.Process(target=_saver, args=(str(data_dir), database, seconds, streams, results))
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
    parser.add_argument(
        "--streams",
        type=int,
        default=0,
        help="save as N streams of one worker through group commit (default: one at a time)",
    )
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

        def sampling(stop: threading.Event, done: dict[str, float]) -> None:
            done["sampled"] = 0
            while not stop.is_set():
                before = registry.db.execute("SELECT count(*) FROM review_considered").fetchone()[0]
                registry.sample(0.01, limit=5_000)
                done["sampled"] += registry.db.execute("SELECT count(*) FROM review_considered").fetchone()[0] - before

        def opting_out(per_second: float | None) -> Any:
            def run(stop: threading.Event, done: dict[str, float]) -> None:
                done["consent_changes"] = 0
                waited: list[float] = []
                rng = random.Random(5)  # noqa: S311 - which household, not a secret
                allowed = dict.fromkeys(households, True)
                began = time.monotonic()
                while not stop.is_set():
                    if per_second is not None:
                        time.sleep(max(0.0, began + done["consent_changes"] / per_second - time.monotonic()))
                    household = rng.choice(households)
                    allowed[household] = not allowed[household]
                    asked = time.perf_counter()
                    registry.set_consent(household, allowed[household], "bench", Channel.APP)
                    waited.append(time.perf_counter() - asked)
                    done["consent_changes"] += 1
                done["consent_change_p99_ms"] = round(float(np.percentile(waited, 99)) * 1000, 1) if waited else 0
                done["consent_change_max_ms"] = round(max(waited, default=0.0) * 1000, 1)

            return run

        def measure(company: Any = None) -> dict[str, Any]:
            return _phase(data_dir, args.database, args.seconds, args.streams, company)

        figures = {
            "engine": registry.db.dialect,
            "clips": args.clips,
            "seconds_per_phase": args.seconds,
            "saves": f"{args.streams} streams, group commit" if args.streams else "one at a time",
            "alone": measure(),
            "during_sampling": measure(sampling),
            "during_opt_outs_50_per_second": measure(opting_out(50.0)),
            "during_opt_outs_back_to_back": measure(opting_out(None)),
            # Alone again: this shared machine's disk and the database's own background work
            # (PostgreSQL checkpoints the bulk load) move "alone" by itself; shares are of the mean.
            "alone_again": measure(),
        }
        registry.close()
    alone = (figures["alone"]["saves_per_second"] + figures["alone_again"]["saves_per_second"]) / 2
    for phase in ("during_sampling", "during_opt_outs_50_per_second", "during_opt_outs_back_to_back"):
        figures[phase]["share_of_alone"] = round(figures[phase]["saves_per_second"] / alone, 2)
    print(json.dumps(figures, indent=2))
    args.out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()

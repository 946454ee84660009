"""Opt-out latency at scale (reported, never asserted).

    python -m scripts.bench_consent [--clips 1000000] [--pool 100000] [--opt-outs 300] [--database URL]

Builds a clip store with `--clips` rows (10,000 households, rows inserted directly: the
purge never touches audio files), `--pool` of them in the review pool and one open
reviewer assignment per household, then opts random households out one at a time
through the real registry and the real consent publisher against a loopback mosquitto,
and reports p50/p99 for (a) the consent transaction (history + pool purge + assignment
revocation + correction removal + audit + signed outbox row) and (b) opt-out -> signed
retained consent message received (and verified) by a subscriber on the broker; then
(c) the sampler's throughput: clips checked against the eligibility rule per second.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from contract.consent_signature import load_public_key, verify_consent
from contract.messages import ConsentState
from contract.mqtt import MqttSettings
from pipeline.store import SqlClipStore, utc_text
from review_opt_out.publisher import ConsentPublisher
from review_opt_out.registry import Channel, Registry
from review_opt_out.signing import create_key, public_key_path

HOUSEHOLDS = 10_000
# Rows only: the consent paths never read audio, so `audio_bytes` says 2 s were kept and
# `clip_audio` stays empty (a million clips of audio would be ~64 GB on this disk).
INSERT_CLIP = (
    "INSERT INTO clips (utterance_id, device_id, household_id, capture_started_at, received_at, stored_at, "
    "duration_seconds, transcript, end_reason, status, missing_chunks, wake_word, firmware_version, review_allowed, "
    "consent_version, review_blocked, audio_bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def build(workdir: Path, clips: int, pool: int, database: str | None = None) -> tuple[Registry, list[str]]:
    """A fresh store and registry (with a signing key) in `workdir` (and `database`, an
    empty PostgreSQL database, if given), populated."""
    SqlClipStore(workdir, database=database).close()
    create_key(workdir)
    registry = Registry(workdir, database=database)
    households = populate(registry, clips, pool)
    if database is not None:
        registry.db.execute("VACUUM ANALYZE")  # as autovacuum would after a bulk load: plans on real statistics
    return registry, households


def populate(registry: Registry, clips: int, pool: int) -> list[str]:
    """Households opted in at version 2, their clips, the pool, one open assignment each."""
    changed = utc_text(datetime.now(UTC) - timedelta(days=1))
    now = utc_text(datetime.now(UTC))
    households = [f"h{i:05d}" for i in range(HOUSEHOLDS)]
    per_household_pool = pool // HOUSEHOLDS
    with registry.transaction() as db:
        db.executemany(
            "INSERT INTO households VALUES (?, ?, 1, 2, NULL, 1, ?, 'UTC')", [(h, h, now) for h in households]
        )
        db.executemany(
            "INSERT INTO consent_history VALUES (?, ?, ?, 'bench', 'app', ?)",
            [(h, v, int(v == 2), changed) for h in households for v in (1, 2)],
        )
        signed = [
            (
                h,
                registry.signer.sign(
                    ConsentState(household_id=h, review_allowed=True, consent_version=2, changed_at=datetime.now(UTC))
                ),
            )
            for h in households
        ]
        db.executemany("INSERT INTO consent_outbox VALUES (?, 2, ?, 1)", signed)
        db.execute(
            "INSERT INTO reviewers (reviewer_id, name, role, password_hash) VALUES ('r1', 'rita', 'reviewer', 'x')"
        )
        batch: list[tuple[Any, ...]] = []
        pooled: list[tuple[Any, ...]] = []
        assigned: list[tuple[Any, ...]] = []
        for i in range(clips):
            household = households[i % HOUSEHOLDS]
            clip_id = str(uuid.UUID(int=i))
            batch.append((clip_id, f"d-{household}", household, now, now, now, 2.0, "", "silence", "complete", 0,
                          "alexa", "bench", 1, 2, None, 64_000))  # fmt: skip
            nth = i // HOUSEHOLDS
            if nth < per_household_pool:
                pseudonym = f"p{i}"
                pooled.append((clip_id, pseudonym, household, now))
                if nth == 0:
                    assigned.append((pseudonym, clip_id, household, "r1", "open", now, None))
            if len(batch) >= 50_000:
                db.executemany(INSERT_CLIP, batch)
                batch.clear()
        db.executemany(INSERT_CLIP, batch)
        db.executemany("INSERT INTO review_pool VALUES (?, ?, ?, ?)", pooled)
        db.executemany("INSERT INTO assignments VALUES (?, ?, ?, ?, ?, ?, ?)", assigned)
    return households


def main() -> None:
    """Build, measure, report."""
    from tests.broker import Broker

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=1_000_000)
    parser.add_argument("--pool", type=int, default=100_000)
    parser.add_argument("--opt-outs", type=int, default=300)
    parser.add_argument("--database", help="an empty PostgreSQL database (postgresql://…); default SQLite")
    parser.add_argument("--out", type=Path, default=Path("reports/consent_bench.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        started = time.monotonic()
        registry, households = build(workdir, args.clips, args.pool, args.database)
        build_seconds = time.monotonic() - started
        counts = {
            "clips": registry.db.execute("SELECT COUNT(*) FROM clips").fetchone()[0],
            "pool": registry.db.execute("SELECT COUNT(*) FROM review_pool").fetchone()[0],
            "open_assignments": registry.db.execute("SELECT COUNT(*) FROM assignments").fetchone()[0],
        }
        print("built", counts, f"in {build_seconds:.1f} s", flush=True)

        broker = Broker(workdir)
        broker.start()
        arrived: dict[tuple[str, int], float] = {}
        got = threading.Condition()

        public_key = load_public_key(public_key_path(workdir))

        def on_message(_c: Any, _u: Any, message: Any) -> None:
            household = message.topic.split("/")[-2]
            body = verify_consent(message.payload, public_key, household).model_dump()
            with got:
                arrived[(body["household_id"], body["consent_version"])] = time.perf_counter()
                got.notify_all()

        subscriber = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        subscriber.on_message = on_message
        subscriber.connect("127.0.0.1", broker.port)
        subscriber.subscribe("earmark/v1/households/+/consent", qos=1)
        subscriber.loop_start()
        publisher = ConsentPublisher(registry, MqttSettings(port=broker.port))
        publisher.start()
        publisher.connected.wait(10)
        deadline = time.monotonic() + 120  # at connect it republishes every household's state
        while publisher.republished < HOUSEHOLDS and time.monotonic() < deadline:
            time.sleep(0.1)
        print(f"republished {publisher.republished} households at connect", flush=True)

        commit_s: list[float] = []
        published_s: list[float] = []
        purged: list[int] = []
        for household in random.Random(7).sample(households, args.opt_outs):  # noqa: S311
            before = registry.pool_households().get(household, 0) if len(purged) < 5 else None
            t0 = time.perf_counter()
            changed = registry.set_consent(household, False, "bench", Channel.APP)
            t1 = time.perf_counter()
            publisher.notify()
            key = (household, changed.consent_version)
            with got:
                got.wait_for(lambda: key in arrived, timeout=10)  # noqa: B023 - waited on right here
            commit_s.append(t1 - t0)
            published_s.append(arrived[key] - t0)
            if before is not None:
                purged.append(before)
                assert household not in registry.pool_households()  # noqa: S101

        def pct(values: list[float]) -> dict[str, float]:
            return {
                "p50_ms": float(np.percentile(values, 50) * 1000),
                "p99_ms": float(np.percentile(values, 99) * 1000),
            }

        checked = 0
        t0 = time.perf_counter()
        for _ in range(10):  # 100,000 clips checked against the rule, 10,000 per round
            registry.sample(0.0, limit=10_000)
            checked += 10_000
        sampler_seconds = time.perf_counter() - t0
        figures = {
            "engine": registry.db.dialect,
            **counts,
            "opt_outs": args.opt_outs,
            "pool_rows_per_household_purged": purged,
            "consent_transaction": pct(commit_s),
            "opt_out_to_retained_message": pct(published_s),
            "sampler_clips_checked_per_second": round(checked / sampler_seconds),
            "verdicts_of_checked_clips": dict(registry.verdicts()),
        }
        print(json.dumps(figures, indent=1))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(figures, indent=1))
        publisher.stop()
        subscriber.loop_stop()
        subscriber.disconnect()
        broker.stop()
        registry.close()


if __name__ == "__main__":
    main()

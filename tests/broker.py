"""A real mosquitto on a free loopback port, started and stopped by the tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Broker:
    """mosquitto with a config this class writes; `kill()` and `start()` for outage tests."""

    def __init__(self, workdir: Path, extra_config: str = "") -> None:
        if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
            raise RuntimeError("mosquitto is not installed: apt-get install mosquitto")
        self.port = free_port()
        self.config = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"
            # mosquitto silently drops QoS 1 messages queued past this for a slow
            # subscriber (default 1000); the pipeline must never lose a burst that way.
            "max_queued_messages 200000\n"
            # Started as root, mosquitto would drop to its own user and lose access to
            # the files here; this broker is the test's own process.
            "user root\n"
            f"log_dest file {self.log}\n"
            f"{extra_config}"
        )
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_seconds: float = 10.0) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        with open(self.log.with_suffix(".stderr"), "ab") as stderr:
            self._process = subprocess.Popen([binary, "-c", str(self.config)], stderr=stderr)
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"mosquitto exited: {self._process.stderr.read().decode() if self._process.stderr else ''}"
                )
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening in time")

    def kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=10)
            self._process = None

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
            self._process = None

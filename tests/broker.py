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

    def __init__(self, workdir: Path, extra_config: str = "", config_text: str | None = None) -> None:
        if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
            raise RuntimeError("mosquitto is not installed: apt-get install mosquitto")
        self.port = free_port()
        self.config = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        self._process: subprocess.Popen[bytes] | None = None
        # Started as root, mosquitto would drop to its own user and lose access to the
        # files here; this broker is the test's own process.
        if config_text is not None:
            # A full config from the caller (ACL and TLS tests).
            self.config.write_text(config_text + "user root\n")
            return
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"
            # mosquitto silently drops QoS 1 messages queued past this for a slow
            # subscriber (default 1000); the pipeline must never lose a burst that way.
            "max_queued_messages 200000\n"
            "user root\n"
            f"log_dest file {self.log}\n"
            f"{extra_config}"
        )

    def start(self, timeout_seconds: float = 10.0) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        stderr_path = self.log.with_suffix(".stderr")
        with open(stderr_path, "ab") as stderr:
            process = subprocess.Popen([binary, "-c", str(self.config)], stderr=stderr)
        self._process = process
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {stderr_path.read_text()}")
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

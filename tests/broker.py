"""A real mosquitto on a free loopback port, started and stopped by the tests."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from hardware.broker_config import common_conf_lines


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Broker:
    """mosquitto with a config this class writes; `kill()` and `start()` for outage tests.

    `persistence=True` keeps sessions, queues and retained messages in `workdir` across
    `stop()`/`start()` (not across `kill()`: mosquitto saves on a clean exit). Off by
    default, so an outage test's broker comes back empty.
    """

    def __init__(
        self,
        workdir: Path,
        extra_config: str = "",
        config_text: str | None = None,
        persistence: bool = False,
        port: int | None = None,
    ) -> None:
        if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
            raise RuntimeError("mosquitto is not installed: apt-get install mosquitto")
        self.port = port or free_port()
        self.config = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        self._process: subprocess.Popen[bytes] | None = None
        # Started as root, mosquitto would drop to its own user and lose access to the
        # files here; this broker is the test's own process.
        if config_text is not None:
            # A full config from the caller (ACL and TLS tests).
            has_user = any(line.startswith("user ") for line in config_text.splitlines())
            self.config.write_text(config_text + ("" if has_user else "user root\n"))
            return
        # The same limits, Nagle setting and queue depth as every broker Earmark configures.
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            *common_conf_lines(workdir if persistence else None),
            "user root",
            f"log_dest file {self.log}",
        ]
        self.config.write_text("\n".join(lines) + "\n" + extra_config)

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

    def reload(self) -> None:
        """SIGHUP: mosquitto rereads its password and ACL files (asynchronously)."""
        assert self._process is not None
        self._process.send_signal(signal.SIGHUP)

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


def _tcp_table() -> dict[tuple[int, int], str]:
    """(local port, remote port) -> socket inode, for every IPv4 and IPv6 TCP socket."""
    table: dict[tuple[int, int], str] = {}
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(name).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote = (int(f.rsplit(":", 1)[1], 16) for f in fields[1:3])
            if fields[9] != "0":  # 0: a closed connection in TIME_WAIT, owned by no process
                table[(local, remote)] = fields[9]
    return table


def server_tcp_nodelay(server_port: int, client_port: int) -> bool:
    """Whether the server process's end of the connection from `client_port` has TCP_NODELAY set (Linux)."""
    inode = _tcp_table()[(server_port, client_port)]
    for pid in (d for d in os.listdir("/proc") if d.isdigit()):
        with_fds = Path("/proc", pid, "fd")
        try:
            fds = [fd for fd in os.listdir(with_fds) if os.readlink(with_fds / fd) == f"socket:[{inode}]"]
        except OSError:
            continue  # another process's fds, or it exited
        if fds:
            # pidfd_getfd(2) (Linux 5.6+) copies the server's socket into this process, so
            # the option is read from the real socket, not inferred from timings.
            libc = ctypes.CDLL(None, use_errno=True)
            pidfd = os.pidfd_open(int(pid))
            try:
                copy = libc.syscall(438, pidfd, int(fds[0]), 0)  # 438 = pidfd_getfd on x86-64 and arm64
                if copy < 0:
                    raise OSError(ctypes.get_errno(), "pidfd_getfd")
            finally:
                os.close(pidfd)
            with socket.socket(fileno=copy) as server_end:
                return bool(server_end.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
    raise LookupError(f"no process holds the server end of port {server_port}")


def listening_addresses(port: int) -> set[str]:
    """The IPv4 addresses with a TCP socket listening on `port` (Linux /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, local_port = local.split(":")
        if state == "0A" and int(local_port, 16) == port:  # 0A = LISTEN
            found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found

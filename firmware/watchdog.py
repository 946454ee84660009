"""systemd notifications (sd_notify) without a dependency: READY, and WATCHDOG pings.

systemd kills and restarts the service if the main loop stops pinging for `WatchdogSec`,
which catches a hung audio read or a deadlock, not just a crash.
"""

from __future__ import annotations

import logging
import os
import socket
import time

_LOGGER = logging.getLogger(__name__)


class Notifier:
    """Talks to $NOTIFY_SOCKET when systemd provides one; does nothing otherwise."""

    def __init__(self, environ: dict[str, str] | None = None, clock: object = time.monotonic) -> None:
        env = dict(os.environ if environ is None else environ)
        address = env.get("NOTIFY_SOCKET")
        self._address = ("\0" + address[1:]) if address and address.startswith("@") else address
        watchdog_usec = int(env.get("WATCHDOG_USEC", "0") or 0)
        # Ping at half the timeout, as sd_watchdog_enabled(3) recommends.
        self._interval_seconds = watchdog_usec / 2e6 if watchdog_usec else None
        self._clock = clock
        self._last_ping = float("-inf")
        self._socket: socket.socket | None = None
        if self._address:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    @property
    def enabled(self) -> bool:
        """Whether systemd is listening."""
        return self._socket is not None

    def _send(self, message: str) -> None:
        if self._socket is None or self._address is None:
            return
        try:
            self._socket.sendto(message.encode(), self._address)
        except OSError as err:
            _LOGGER.warning("sd_notify failed: %s", err)

    def ready(self) -> None:
        """Tell systemd start-up is complete."""
        self._send("READY=1")

    def status(self, text: str) -> None:
        """A one-line status for `systemctl status`."""
        self._send(f"STATUS={text}")

    def ping(self) -> None:
        """Call from the main loop as often as you like; it sends at half the watchdog period."""
        if self._interval_seconds is None:
            return
        now = self._clock()  # type: ignore[operator]
        if now - self._last_ping >= self._interval_seconds:
            self._last_ping = now
            self._send("WATCHDOG=1")

    def stopping(self) -> None:
        """Tell systemd a clean stop is under way, and release the socket."""
        self._send("STOPPING=1")
        self.close()

    def close(self) -> None:
        """Release the socket."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None

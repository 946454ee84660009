"""The names and addresses under which a phone on the same network can reach this machine."""

from __future__ import annotations

import contextlib
import socket
from urllib.parse import urlsplit

from review_opt_out.web_guard import LOOPBACK_HOSTS


def lan_addresses() -> list[str]:
    """This machine's IPv4 address on the network its default route leads to (none offline).

    A UDP socket "connected" to a documentation address sends nothing; the kernel only
    picks the source address it would use, which is the one other devices see.
    """
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))
        address = str(probe.getsockname()[0])
        if not address.startswith("127."):
            return [address]
    return []


def host_names() -> list[str]:
    """The machine's name, and its mDNS name (`.local`, which phones resolve on a home network)."""
    name = socket.gethostname().split(".")[0].lower()
    return [name, f"{name}.local"] if name and name != "localhost" else []


def reachable_names(extra: list[str] | None = None) -> list[str]:
    """Every name the app should answer to: LAN addresses, host names, loopback, and `extra`."""
    names = [*(extra or []), *lan_addresses(), *host_names(), *LOOPBACK_HOSTS]
    return list(dict.fromkeys(names))


def is_loopback_url(url: str) -> bool:
    """Whether `url` names this machine only (nobody else on the network can open it)."""
    host = (urlsplit(url).hostname or "").lower()
    return host in LOOPBACK_HOSTS or host == "::1" or host.startswith("127.")


def bind_error(host: str, port: int) -> str | None:
    """Why `host:port` cannot be listened on now (the system's reason), or None if it can."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            return err.strerror or str(err)
    return None

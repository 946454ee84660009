"""Zeroconf: advertise `_wyoming._tcp` so Home Assistant offers the speaker by itself."""

from __future__ import annotations

import ipaddress
import logging
import re
import socket

from zeroconf import IPVersion
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

_LOGGER = logging.getLogger(__name__)

SERVICE_TYPE = "_wyoming._tcp.local."


def _addresses(host: str) -> list[str]:
    """The IPv4 addresses Home Assistant can reach: the bound one, or every non-loopback one."""
    if host not in ("", "0.0.0.0"):  # noqa: S104 - comparing, not binding
        return [host]
    import ifaddr

    found = [
        ip.ip
        for adapter in ifaddr.get_adapters()
        for ip in adapter.ips
        if isinstance(ip.ip, str) and not ipaddress.ip_address(ip.ip).is_loopback
    ]
    return found or ["127.0.0.1"]


def instance_name(name: str) -> str:
    """A DNS-SD instance label made from the speaker's name."""
    return re.sub(r"[^A-Za-z0-9-]+", "-", name).strip("-")[:63] or "earmark"


class Advertiser:
    """Holds one mDNS registration for as long as the satellite serves."""

    def __init__(self) -> None:
        self._zeroconf: AsyncZeroconf | None = None
        self._info: AsyncServiceInfo | None = None

    async def start(self, name: str, host: str, port: int) -> None:
        """Announce the service on the local network."""
        addresses = _addresses(host)
        label = instance_name(name)
        self._info = AsyncServiceInfo(
            SERVICE_TYPE,
            f"{label}.{SERVICE_TYPE}",
            addresses=[socket.inet_aton(a) for a in addresses],
            port=port,
            server=f"{label}.local.",
        )
        self._zeroconf = AsyncZeroconf(ip_version=IPVersion.V4Only)
        await self._zeroconf.async_register_service(self._info)
        _LOGGER.info("advertised %s on %s port %d", f"{label}.{SERVICE_TYPE}", ", ".join(addresses), port)

    async def stop(self) -> None:
        """Withdraw the announcement (Home Assistant then stops offering it)."""
        if self._zeroconf is not None and self._info is not None:
            await self._zeroconf.async_unregister_service(self._info)
            await self._zeroconf.async_close()
        self._zeroconf = None

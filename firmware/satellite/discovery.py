"""Zeroconf: advertise `_wyoming._tcp` so Home Assistant offers the speaker by itself."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import socket
from collections.abc import Awaitable

from zeroconf import Error as ZeroconfError
from zeroconf import IPVersion
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from firmware.satellite.settings import on_every_interface

_LOGGER = logging.getLogger(__name__)

SERVICE_TYPE = "_wyoming._tcp.local."


def announceable(host: str) -> bool:
    """Whether listening on `host` is something to tell the LAN about: a speaker kept on
    loopback (a test, a proxy in front) must not invite Home Assistant to an address that
    is not there."""
    if on_every_interface(host):
        return True
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host != "localhost"


def _addresses(host: str) -> list[str]:
    """The IPv4 addresses Home Assistant can reach: the bound one, or every one on the LAN
    (never loopback or link-local: an announcement of those only misleads)."""
    if not on_every_interface(host):
        return [host]  # the link never advertises a host that is not announceable
    import ifaddr

    found = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str):
                address = ipaddress.ip_address(ip.ip)
                if not (address.is_loopback or address.is_link_local):
                    found.append(ip.ip)
    return found


def instance_name(name: str) -> str:
    """A DNS-SD instance label from the speaker's name: UTF-8 is allowed (주방 스피커), dots
    and control characters are not, and a label is at most 63 bytes."""
    label = re.sub(r"[.\x00-\x1f\x7f]+", " ", name).strip() or "earmark"
    encoded = label.encode()[:63]
    return encoded.decode(errors="ignore").strip() or "earmark"


def _host_label(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9-]+", "-", name).strip("-")[:63] or "earmark"


class Advertiser:
    """Holds one mDNS registration for as long as the satellite serves."""

    def __init__(self) -> None:
        self._zeroconf: AsyncZeroconf | None = None
        self._info: AsyncServiceInfo | None = None
        self._broadcast: asyncio.Future[object] | None = None  # the announcements still being sent

    async def start(self, name: str, host: str, port: int) -> bool:
        """Announce the service on the local network; False (and nothing held) when there is
        no LAN address yet or the announcement fails. Another speaker of the same name gets
        a numbered one, as mDNS does it."""
        addresses = _addresses(host)
        if not addresses:
            return False
        label = instance_name(name)
        self._info = AsyncServiceInfo(
            SERVICE_TYPE,
            f"{label}.{SERVICE_TYPE}",
            addresses=[socket.inet_aton(a) for a in addresses],
            port=port,
            server=f"{_host_label(name)}.local.",
        )
        self._zeroconf = AsyncZeroconf(ip_version=IPVersion.V4Only)
        try:
            self._broadcast = asyncio.ensure_future(
                await self._zeroconf.async_register_service(self._info, allow_name_change=True)
            )
        except (OSError, ZeroconfError) as err:
            _LOGGER.warning("zeroconf announcement failed (%s)", err)
            await self._zeroconf.async_close()
            self._zeroconf = None
            return False
        _LOGGER.info("advertised %r on %s port %d", self._info.name, ", ".join(addresses), port)
        return True

    async def stop(self) -> None:
        """Withdraw the announcement (Home Assistant then stops offering it)."""
        if self._broadcast is not None:
            # Stopped while still announcing: left pending, the task would be destroyed
            # with the loop ("Task was destroyed but it is pending!").
            self._broadcast.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError, ZeroconfError):
                await self._broadcast
            self._broadcast = None
        if self._zeroconf is not None and self._info is not None:
            with contextlib.suppress(OSError, ZeroconfError):
                await await_goodbye(await self._zeroconf.async_unregister_service(self._info))
            await self._zeroconf.async_close()
        self._zeroconf = None


async def await_goodbye(sent: Awaitable[object]) -> None:
    """Wait (briefly) for the goodbye packets, so Home Assistant drops the speaker at once."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(3):
            await sent

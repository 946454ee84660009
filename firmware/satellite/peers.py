"""Who is connected to the satellite, and who may connect: one job, apart from the protocol.

Wyoming has no authentication, so strangers on the LAN can connect too. Only the pinned
Home Assistant may run the speaker (`control.py`); others may describe and ping, a few
at a time. Home Assistant is never refused because strangers hold the slots: the oldest
stranger makes room for it, and a second connection from its address closes a stale
one of its own, never the live one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

from wyoming.event import Event, async_write_event

from firmware.satellite.control import Control, host_of

_LOGGER = logging.getLogger("firmware.satellite.link")

_OUTBOX_EVENTS = 512  # ~40 s of 80 ms chunks: a peer further behind than that is gone
MAX_PEERS = 4  # Home Assistant holds one; its config flow and a doctor may briefly add others
MAX_PEERS_PER_ADDRESS = 2  # a reconnecting Home Assistant may overlap its old connection once


class Peer:
    """One connection from Home Assistant (or anything speaking Wyoming)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        peername = writer.get_extra_info("peername")
        self.address = str(peername)
        self.host = host_of(peername[0]) if peername else ""  # "": hung up before it was served
        self._outbox: asyncio.Queue[Event] = asyncio.Queue(maxsize=_OUTBOX_EVENTS)
        self._sender = asyncio.get_running_loop().create_task(self._send_all())

    def send(self, event: Event) -> None:
        """Queue an event for it; a peer that stopped reading is dropped, not waited for."""
        try:
            self._outbox.put_nowait(event)
        except asyncio.QueueFull:
            _LOGGER.warning("Home Assistant at %s stopped reading: dropping the connection", self.address)
            self.close()

    async def _send_all(self) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            while True:
                await async_write_event(await self._outbox.get(), self.writer)

    def close(self) -> None:
        """Hang up; its handler ends on the closed stream."""
        self._sender.cancel()
        self.writer.close()


class Peers:
    """The open connections, oldest first (the first to make room)."""

    def __init__(self, control: Control) -> None:
        self._control = control
        self._open: dict[Peer, None] = {}

    def __iter__(self) -> Iterator[Peer]:
        return iter(list(self._open))

    def __len__(self) -> int:
        return len(self._open)

    def add(self, peer: Peer) -> None:
        """`peer` was admitted."""
        self._open[peer] = None

    def remove(self, peer: Peer) -> None:
        """`peer` is gone."""
        self._open.pop(peer, None)

    def admit(self, peer: Peer, live: Peer | None) -> str | None:
        """Why `peer` cannot be served now, or None once there is room for it. The pinned
        Home Assistant always gets in: the oldest connection in its way is closed."""
        if not peer.host or not self._control.admits(peer.host):
            return "not in satellite.allowed_peers"
        pinned = peer.host == self._control.pinned_address
        same_host = [p for p in self._open if p.host == peer.host]
        if len(same_host) >= MAX_PEERS_PER_ADDRESS:
            if not pinned:
                return f"{len(same_host)} already open from that address"
            # Home Assistant again: an old connection of its is stale, but never the live one.
            stale = [p for p in same_host if p is not live]
            if not stale:
                return f"{len(same_host)} already open from that address"
            self._evict(stale[0])
        if len(self._open) >= MAX_PEERS:
            strangers = [p for p in self._open if p.host != self._control.pinned_address]
            if not pinned or not strangers:
                return f"{len(self._open)} already open"
            self._evict(strangers[0])
        return None

    def _evict(self, peer: Peer) -> None:
        _LOGGER.warning("closing the connection from %s to make room for Home Assistant", peer.address)
        self._open.pop(peer, None)
        peer.close()  # its handler ends on the closed stream and tidies up (`_lost` if it ran us)

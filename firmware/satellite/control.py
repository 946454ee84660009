"""Who may drive the satellite, kept on disk: the pinned Home Assistant and the pause.

Wyoming has no authentication: anyone on the LAN can connect and say `run-satellite`.
Obeying the newest connection would let a stranger undo Home Assistant's pause and
receive the household's next request. So the first peer that runs the speaker is
*pinned* by its address, and from then on only that address may run it, until the
household releases the pin (`earmark device satellite-pair`). A pause lasts until the
pinned Home Assistant runs the speaker again: across reconnects and restarts, because it
is written here before it takes effect.

What this cannot stop: a device on the LAN that takes over the pinned address (ARP or
DHCP spoofing) is that address; and before the first pin (or after a release) whoever
runs the speaker first is pinned, so a household that knows its Home Assistant's address
pins it outright (`earmark device satellite-pair --to ADDR`). `satellite.allowed_peers`,
a separate network for speakers, or a firewall rule narrow who can try.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from firmware.errors import SatelliteError
from firmware.state_file import write_atomically

_LOGGER = logging.getLogger(__name__)

FILE_NAME = "satellite.json"

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ControlState(BaseModel):
    """What survives a restart. An unreadable file means paused (the privacy-safe side)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pinned_address: str | None = None
    paused: bool = False


def host_of(address: str) -> str:
    """An IP address in one spelling: IPv4-mapped IPv6 (`::ffff:10.0.0.5`) as IPv4."""
    parsed = ipaddress.ip_address(address)
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        return str(parsed.ipv4_mapped)
    return str(parsed)


class Control:
    """The pin and the pause, read from and written to `state_dir/satellite.json`."""

    def __init__(self, path: Path, allowed_peers: tuple[IpNetwork, ...] = ()) -> None:
        self._path = path
        self._allowed = allowed_peers
        self._unsaved = False  # the disk refused the last write: memory is the truth until one succeeds
        self._state = self._read()

    @classmethod
    def open(cls, state_dir: Path, allowed_peers: tuple[IpNetwork, ...] = ()) -> Control:
        """The control kept in the device's state directory."""
        return cls(state_dir.expanduser() / FILE_NAME, allowed_peers)

    @property
    def paused(self) -> bool:
        """Home Assistant paused the speaker and has not run it since."""
        return self._state.paused

    @property
    def pinned_address(self) -> str | None:
        """The only address that may run the speaker; None until one has."""
        return self._state.pinned_address

    def admits(self, host: str) -> bool:
        """Whether a connection from `host` may be served at all (describe, ping)."""
        if not self._allowed:
            return True
        address = ipaddress.ip_address(host)
        return any(address in network for network in self._allowed)

    def may_run(self, host: str) -> bool:
        """Whether `host` may run the speaker. Re-reads the file first: the household may
        have released or moved the pin from another process while this one serves."""
        if not self.admits(host):
            return False
        self._refresh()
        return self._state.pinned_address in (None, host)

    def run(self, host: str) -> None:
        """`host` runs the speaker: pinned if nothing was, and the pause is over."""
        if not self.may_run(host):
            raise SatelliteError(f"{host} may not run this speaker")
        if self._state.pinned_address is None:
            _LOGGER.warning("pinned Home Assistant at %s: only it may run this speaker from now on", host)
        self._write(ControlState(pinned_address=host, paused=False))

    def pause(self) -> None:
        """The pinned peer paused the speaker: nothing is sent until it runs it again."""
        self._refresh()  # never write back a pin the household released meanwhile
        self._write(self._state.model_copy(update={"paused": True}))

    def release(self, pin_to: str | None = None) -> str | None:
        """Forget the pinned peer, or pin `pin_to` instead (the pause stays); the
        previously pinned address. Pinning an address outright leaves no moment in which
        whoever speaks first on the LAN is pinned."""
        self._refresh()
        previous = self._state.pinned_address
        self._write(self._state.model_copy(update={"pinned_address": None if pin_to is None else host_of(pin_to)}))
        return previous

    def _refresh(self) -> None:
        """Take the file's state, unless the disk refused our last write: then memory is
        the truth, and a file that still says "not paused" must not undo a pause."""
        if not self._unsaved:
            self._state = self._read()

    def _read(self) -> ControlState:
        try:
            return ControlState.model_validate(json.loads(self._path.read_text()))
        except FileNotFoundError:
            return ControlState()
        except (OSError, ValueError, ValidationError) as err:
            # Which peer was pinned is unknown: refuse every newcomer until re-paired, and
            # stay paused, rather than guess in a stranger's favour.
            _LOGGER.error("unreadable %s (%s): paused and pinned to nobody until re-paired", self._path, err)
            return ControlState(pinned_address="", paused=True)

    def _write(self, state: ControlState) -> None:
        self._state = state  # in force now, even if the disk refuses it
        try:
            write_atomically(self._path, state.model_dump_json())
            self._unsaved = False
        except OSError as err:
            self._unsaved = True
            _LOGGER.error("cannot keep the pin and pause in %s (%s): in force until restart", self._path, err)

"""Reading Wyoming events from a peer with the device's own limits.

`wyoming.event.async_read_event` trusts the lengths a peer declares. Wyoming has no
authentication and anyone on the LAN can connect, so a speaker with 512 MiB must not
buffer whatever size a stranger announces: headers, data and payloads are bounded here.
"""

from __future__ import annotations

import asyncio
import json

from wyoming.event import Event

MAX_HEADER_BYTES = 16 * 1024
MAX_DATA_BYTES = 64 * 1024
MAX_PAYLOAD_BYTES = 1024 * 1024  # a TTS chunk is ~2-4 KiB; one second of 48 kHz stereo is 192 KiB


class PeerError(Exception):
    """The peer sent something that is not a Wyoming event within our limits."""


def _length(header: dict[str, object], key: str, limit: int) -> int:
    value = header.get(key)
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise PeerError(f"{key} is not a non-negative integer")
    if value > limit:
        raise PeerError(f"{key} {value} exceeds {limit}")
    return value


async def read_event(reader: asyncio.StreamReader) -> Event | None:
    """The next event, or None when the peer closed the connection."""
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as err:
        if err.partial:
            raise PeerError("connection closed inside an event header") from err
        return None
    except asyncio.LimitOverrunError as err:
        raise PeerError(f"event header longer than {MAX_HEADER_BYTES} bytes") from err
    try:
        header = json.loads(line)
    except ValueError as err:
        raise PeerError("event header is not JSON") from err
    if not isinstance(header, dict) or not isinstance(header.get("type"), str):
        raise PeerError("event header has no type")
    data = header.get("data") or {}
    if not isinstance(data, dict):
        raise PeerError("event data is not an object")
    data_length = _length(header, "data_length", MAX_DATA_BYTES)
    payload_length = _length(header, "payload_length", MAX_PAYLOAD_BYTES)
    try:
        if data_length:
            extra = json.loads(await reader.readexactly(data_length))
            if not isinstance(extra, dict):
                raise PeerError("event data is not an object")
            data.update(extra)
        payload = await reader.readexactly(payload_length) if payload_length else None
    except asyncio.IncompleteReadError as err:
        raise PeerError("connection closed inside an event body") from err
    except ValueError as err:
        raise PeerError("event data is not JSON") from err
    return Event(type=header["type"], data=data, payload=payload)

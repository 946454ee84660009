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
MAX_PAYLOAD_BYTES = 64 * 1024  # Home Assistant's TTS chunks are 1024 samples (2-4 KiB)
BODY_TIMEOUT_SECONDS = 10.0  # a peer that announces a body must send it, not hold memory open


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
    header = _json(line, "event header")
    if not isinstance(header, dict) or not isinstance(header.get("type"), str):
        raise PeerError("event header has no type")
    data = header.get("data")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PeerError("event data is not an object")
    data_length = _length(header, "data_length", MAX_DATA_BYTES)
    payload_length = _length(header, "payload_length", MAX_PAYLOAD_BYTES)
    try:
        async with asyncio.timeout(BODY_TIMEOUT_SECONDS):
            if data_length:
                extra = _json(await reader.readexactly(data_length), "event data")
                if not isinstance(extra, dict):
                    raise PeerError("event data is not an object")
                data.update(extra)
            payload = await reader.readexactly(payload_length) if payload_length else None
    except asyncio.IncompleteReadError as err:
        raise PeerError("connection closed inside an event body") from err
    except TimeoutError as err:
        raise PeerError(f"event body not sent within {BODY_TIMEOUT_SECONDS:.0f} s") from err
    return Event(type=header["type"], data=data, payload=payload)


def _json(text: bytes, what: str) -> object:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as err:  # RecursionError: [[[[...]]]] nested past the stack
        raise PeerError(f"{what} is not JSON") from err

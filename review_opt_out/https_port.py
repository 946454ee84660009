"""The app's HTTPS port, which answers someone who typed `http://` with where to go instead.

Browsers try `http://` when a person types `kitchen-pi.local:8443`. A TLS listener gets
a plain request it cannot parse and closes the connection: the person sees "empty
response" and no hint. Here each connection's first byte is looked at, without taking it
from the socket, before anything is read: a TLS handshake (0x16) is handed to TLS and then
to uvicorn's own HTTP protocol, exactly as uvicorn would have served it; anything else
gets one small plain answer pointing to `https://` and is closed. Nothing the app serves
is ever sent without TLS.

The pointer names only a host the app answers to anyway (its own names and addresses):
an attacker-chosen `Host` gets the same words without a link.

It plugs into uvicorn through its public `http=` setting (a protocol class built with the
config, server state and app state uvicorn passes to every connection's protocol), so
uvicorn still owns the listener, the lifespan and the graceful shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, cast
from urllib.parse import urlsplit

_LOGGER = logging.getLogger(__name__)

TLS_HANDSHAKE: Final = 0x16  # the first byte of every TLS record that opens a connection
# A connection that says nothing, or a plain request that never ends, is closed after this.
FIRST_BYTES_SECONDS: Final = 10.0
PLAIN_REQUEST_LIMIT_BYTES: Final = 8192


def server_context(certificate: Path, key: Path) -> ssl.SSLContext:
    """The TLS settings the app serves with (the library's defaults for a server)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(certificate), str(key))
    return context


def pointer(request_head: bytes, names: Sequence[str], port: int) -> bytes:
    """The whole plain-HTTP answer to a request that came without TLS."""
    lines = request_head.split(b"\r\n")
    method = lines[0].split(b" ", 1)[0]
    host = ""
    for line in lines[1:]:
        field, _, value = line.partition(b":")
        if field.strip().lower() == b"host":
            with contextlib.suppress(UnicodeDecodeError, ValueError):
                host = (urlsplit("//" + value.strip().decode("ascii")).hostname or "").lower()
            break
    known = host in {name.lower() for name in names}
    if known and method in (b"GET", b"HEAD"):
        shown = f"[{host}]" if ":" in host else host
        target = f"https://{shown}:{port}/"
        status = "302 Found"
        body = f"Earmark's app only answers over HTTPS: open {target}\n"
        extra = f"Location: {target}\r\n"
    else:
        status = "400 Bad Request"
        body = "Earmark's app only answers over HTTPS: open this address with https:// in front.\n"
        extra = ""
    payload = body.encode() if method != b"HEAD" else b""
    head = (
        f"HTTP/1.1 {status}\r\n{extra}Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body.encode())}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + payload


def protocol_class(context: ssl.SSLContext, names: Sequence[str], port: int) -> type[asyncio.Protocol]:
    """uvicorn's `http=` protocol for one port that serves HTTPS and points plain HTTP to it."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    known = tuple(names)

    class OnePort(asyncio.Protocol):
        """One connection, until it is known to be TLS (then uvicorn's) or plain (then answered)."""

        def __init__(self, config: Any, server_state: Any, app_state: Any, _loop: Any = None) -> None:
            self._uvicorn = {"config": config, "server_state": server_state, "app_state": app_state, "_loop": _loop}
            self._loop: asyncio.AbstractEventLoop = _loop or asyncio.get_running_loop()
            self._transport: asyncio.Transport | None = None
            self._peeker: socket.socket | None = None
            self._deadline: asyncio.TimerHandle | None = None
            self._request = bytearray()
            self._plain = False

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            transport = cast(asyncio.Transport, transport)  # a stream server's connection
            self._transport = transport
            # Paused before the transport ever reads: the first bytes stay in the socket,
            # where TLS will find them.
            transport.pause_reading()
            self._deadline = self._loop.call_later(FIRST_BYTES_SECONDS, transport.abort)
            sock = transport.get_extra_info("socket")
            # A second descriptor of the same connection: asyncio lets a transport's own
            # descriptor be watched only by the transport.
            self._peeker = socket.socket(fileno=os.dup(sock.fileno()))
            self._peeker.setblocking(False)
            self._loop.add_reader(self._peeker.fileno(), self._first_byte)

        def _first_byte(self) -> None:
            if self._transport is None or self._peeker is None:
                return
            try:
                first = self._peeker.recv(1, socket.MSG_PEEK)
            except BlockingIOError:
                return  # woken without data; wait on
            except OSError:
                first = b""
            self._stop_peeking()
            if not first:
                self._transport.abort()
            elif first[0] == TLS_HANDSHAKE:
                self._cancel_deadline()
                self._loop.create_task(self._serve_tls())
            else:
                self._plain = True
                self._transport.resume_reading()

        async def _serve_tls(self) -> None:
            if self._transport is None:
                return
            early = _Early()
            try:
                tls = await self._loop.start_tls(
                    self._transport, early, context, server_side=True, ssl_handshake_timeout=FIRST_BYTES_SECONDS
                )
            except (OSError, ssl.SSLError, TimeoutError) as err:
                _LOGGER.debug("TLS handshake failed: %s", err)
                self._transport.abort()
                return
            if tls is None:  # the connection went away during the handshake
                return
            early.hand_over(tls, AutoHTTPProtocol(**self._uvicorn))

        def data_received(self, data: bytes) -> None:
            if not self._plain or self._transport is None:
                return
            self._request += data
            end = self._request.find(b"\r\n\r\n")
            if end < 0 and len(self._request) < PLAIN_REQUEST_LIMIT_BYTES:
                return
            self._cancel_deadline()
            self._transport.write(pointer(bytes(self._request[: max(end, 0)]), known, port))
            self._transport.close()
            self._plain = False

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_peeking()
            self._cancel_deadline()

        def _stop_peeking(self) -> None:
            if self._peeker is not None:
                self._loop.remove_reader(self._peeker.fileno())
                self._peeker.close()
                self._peeker = None

        def _cancel_deadline(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

    return OnePort


class _Early(asyncio.Protocol):
    """Holds what arrives between the handshake and the moment `start_tls` returns.

    `start_tls` gives the TLS transport back a loop turn after the handshake; a browser's
    request can arrive in between, and uvicorn's protocol must see `connection_made` first.
    """

    def __init__(self) -> None:
        self._data: list[bytes] = []
        self._eof = False
        self._lost: tuple[Exception | None] | None = None

    def data_received(self, data: bytes) -> None:
        self._data.append(data)

    def eof_received(self) -> bool | None:
        self._eof = True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = (exc,)

    def hand_over(self, tls: asyncio.BaseTransport, served: asyncio.Protocol) -> None:
        """Connect `served` to `tls` and give it, in order, everything that came meanwhile."""
        served.connection_made(tls)
        tls.set_protocol(served)
        for data in self._data:
            served.data_received(data)
        if self._eof:
            served.eof_received()
        if self._lost is not None:
            served.connection_lost(self._lost[0])

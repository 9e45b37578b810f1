"""The default server, ``auto``: HTTP/1.1 on uvicorn's httptools protocol, HTTP/2 on hypercorn.

HTTP/1.1 parsed in C (httptools, on llhttp: Node's own parser) is several times faster than hypercorn's
pure-Python h11, and nearly every client of a backend speaks it; HTTP/2 stays hypercorn's. Each
connection goes to one of the two before a byte of it is parsed:

- over TLS, by what ALPN chose: ``h2`` to hypercorn, ``http/1.1`` (or nothing) to httptools;
- in the clear, by its first read: HTTP/2's connection preface (prior knowledge) to hypercorn, and so
  is a first request asking ``Upgrade: h2c`` in that read (hypercorn upgrades it); all else to httptools.

Either server keeps the edge's guarantees (``kernel.gateway.uvicorn_edge``, ``kernel.gateway.hypercorn_edge``:
refusals in the error shape, the head's size and deadline, ``keepAliveTimeout``), and the connection
cap is the one accept loop's (``kernel.gateway.acceptor``). Before its first byte a connection is idle:
``keepAliveTimeout`` closes it silently, as both servers do.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
from collections.abc import Callable
from typing import Any, cast

from kernel.gateway.acceptor import Acceptor, connect
from kernel.gateway.hypercorn_edge import HypercornEdge
from kernel.gateway.uvicorn_edge import UvicornEdge
from kernel.settings import GatewaySettings

#: HTTP/2's connection preface (RFC 9113, 3.4)
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#: an ``Upgrade`` field naming h2c, in the head of a first request (RFC 7540, 3.2)
_H2C = re.compile(rb"\r\nupgrade[ \t]*:[^\r\n]*\bh2c\b", re.IGNORECASE)

_Choice = tuple[str, asyncio.Transport] | None


class _Sniffer(asyncio.Protocol):
    """Holds a new connection until it is known which server takes it, then resolves ``chosen``."""

    def __init__(self, chosen: asyncio.Future[_Choice], idle: float) -> None:
        self._chosen = chosen
        self._idle = idle
        self._buffer = b""
        self._transport: asyncio.Transport | None = None
        self._clock: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio's classes
        tls = transport.get_extra_info("ssl_object")
        if tls is not None:  # the handshake is done: ALPN has spoken
            self._choose("h2" if tls.selected_alpn_protocol() == "h2" else "http/1.1")
        else:
            self._clock = asyncio.get_running_loop().call_later(self._idle, transport.close)

    @property
    def buffer(self) -> bytes:
        """What the connection sent so far: the chosen server's first read."""
        return self._buffer

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._chosen.done():
            return  # read before the pause took effect: handed over with the rest
        head = self._buffer
        if head[:24] == PREFACE[: len(head)] and len(head) < len(PREFACE):
            return  # so far, the preface: read on
        if head.startswith(PREFACE) or (b"h2c" in head and _H2C.search(head.split(b"\r\n\r\n", 1)[0])):
            self._choose("h2")
        else:
            self._choose("http/1.1")

    def _choose(self, protocol: str) -> None:
        if self._clock is not None:
            self._clock.cancel()
        assert self._transport is not None
        if not self._chosen.done():
            self._transport.pause_reading()  # nothing more is read until the chosen server has the connection
            self._chosen.set_result((protocol, self._transport))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def eof_received(self) -> bool:
        return False  # the client left before it said anything: close

    def connection_lost(self, exc: Exception | None) -> None:
        if self._clock is not None:
            self._clock.cancel()
        if not self._chosen.done():
            self._chosen.set_result(None)


async def serve(
    app: Any,
    listener: socket.socket,
    stop: asyncio.Event,
    tls: ssl.SSLContext | None,
    settings: GatewaySettings,
    linger: Callable[[], float] = lambda: 0.0,
) -> None:
    """Serve ``app`` on ``listener`` until ``stop``, then let open requests finish (1 s at most; a retiring
    gateway's connections ``linger()`` seconds, see ``kernel.gateway.acceptor``)."""
    loop = asyncio.get_running_loop()
    h1 = UvicornEdge(app, settings)
    h2 = HypercornEdge(app, settings)
    await h1.start()

    async def connection(sock: socket.socket) -> None:
        chosen: asyncio.Future[_Choice] = loop.create_future()
        sniffer = _Sniffer(chosen, settings.keep_alive_timeout)
        if await connect(sock, lambda: sniffer, tls, settings.headers_timeout) is None:
            return
        try:
            choice = await chosen
        except asyncio.CancelledError:  # shutting down before the client said anything
            sniffer.close()
            raise
        if choice is None:
            return
        protocol, transport = choice
        await (h2 if protocol == "h2" else h1).take(transport, sniffer.buffer)

    acceptor = Acceptor(listener, settings.max_connections, connection)

    def retire() -> None:
        h1.retire()
        h2.retire()

    try:
        await acceptor.run_until(stop)
        await acceptor.linger(linger(), retire)
    finally:
        await h2.close()
        await h1.close()  # idle connections close, busy ones after their answer (1 s at most)
        await acceptor.close(1.0)

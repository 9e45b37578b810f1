"""Uvicorn (httptools) under the kernel's edge: the same refusals in the error shape, deadlines and connection cap.

Uvicorn answers a request httptools cannot parse with a plain-text 400, puts no bound on a request's
head, gives a slow head all the time it wants, and keeps a new connection that sends nothing open
for ever (its keep-alive clock starts only after a first answer). ``EdgeHttpToolsProtocol`` fixes all
four: 400 ``InputError``, 431 ``RequestHeaderFieldsTooLargeError`` / 414 ``UriTooLongError`` over
``maxHeaderSize``, 408 ``RequestTimeoutError`` after ``headersTimeout``, each in the error shape and
closing the connection; ``keepAliveTimeout`` from the moment a connection opens. Connections come from
the kernel's accept loop (``kernel.gateway.acceptor``), so ``maxConnections`` holds here too.

The head is measured as httptools reports it (the request target, each complete field) and, for a
head spread over several reads, by the bytes of every read after its first: a head over the limit is
refused at most one read (256 KiB) late, never a head under it.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from http import HTTPStatus
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from kernel.gateway.acceptor import Acceptor
from kernel.gateway.limits import refusal
from kernel.settings import GatewaySettings
from kernel.transport.sockets import MAX_FRAME  # a WebSocket message travels to the worker as one frame


class _Refused(Exception):
    """Raised from a parser callback: httptools stops, uvicorn calls ``send_400_response``."""


class EdgeHttpToolsProtocol(HttpToolsProtocol):
    """Uvicorn's httptools protocol with the kernel's limits on a request's head (see the module doc)."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: Any,
        app_state: dict[str, Any],
        *,
        settings: GatewaySettings,
        closed: asyncio.Future[None],
    ) -> None:
        super().__init__(config, server_state, app_state)
        self._limit = settings.max_header_size
        self._headers_timeout = settings.headers_timeout
        self._closed = closed
        self._head_clock: asyncio.TimerHandle | None = None
        self._in_head = False  # between a request's first byte and the end of its head
        self._in_request_line = False
        self._size = 0  # the head so far, as parsed
        self._later_reads = 0  # bytes of the head's reads after its first
        self._refusal: tuple[int, str] | None = None

    # -- the connection ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._stop_head_clock()
        _resolve(self._closed)

    def handle_websocket_upgrade(self) -> None:
        super().handle_websocket_upgrade()
        ws = self.transport.get_protocol()  # the WebSocket protocol now owns the connection
        lost = ws.connection_lost
        closed = self._closed

        def connection_lost(exc: Exception | None) -> None:
            lost(exc)
            _resolve(closed)

        ws.connection_lost = connection_lost  # type: ignore[method-assign]

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._later_reads += len(data)
        super().data_received(data)
        if self._in_head and self._later_reads > self._limit and not self.transport.is_closing():
            self._refusal = self._too_large()
            self.send_400_response("")

    # -- the parser's callbacks ---------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = self._in_request_line = True
        self._size = 16  # the method and " HTTP/1.1\r\n", roughly
        self._later_reads = 0
        self._stop_head_clock()
        self._head_clock = self.loop.call_later(self._headers_timeout, self._head_too_slow)

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._grow(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self._in_request_line = False
        self._grow(len(name) + len(value) + 4)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._stop_head_clock()
        super().on_headers_complete()

    def _grow(self, size: int) -> None:
        self._size += size
        if self._size > self._limit:
            self._refusal = self._too_large()
            raise _Refused

    # -- refusals -------------------------------------------------------------------------
    def _too_large(self) -> tuple[int, str]:
        if self._in_request_line:
            return 414, f"The request line is over the limit of {self._limit} bytes"
        return 431, f"The request head is over the limit of {self._limit} bytes"

    def _head_too_slow(self) -> None:
        self._head_clock = None
        if self._in_head and not self.transport.is_closing():
            self._refusal = (408, f"The request head did not arrive within {self._headers_timeout:g}s")
            self.send_400_response("")

    def _stop_head_clock(self) -> None:
        if self._head_clock is not None:
            self._head_clock.cancel()
            self._head_clock = None

    def send_400_response(self, msg: str) -> None:
        """Every refusal of the protocol (uvicorn's name for it), in the error shape; the connection closes."""
        self._stop_head_clock()
        if self.transport.is_closing():
            return
        status, message = self._refusal or (400, "Malformed HTTP request")
        headers, body = refusal(status, message, self._request_line())
        head = [b"HTTP/1.1 %d %s\r\n" % (status, HTTPStatus(status).phrase.encode())]
        head += [b"%s: %s\r\n" % pair for pair in [*headers, *self.server_state.default_headers]]
        self.transport.write(b"".join([*head, b"\r\n", body]))
        self.transport.close()

    def _request_line(self) -> bytes:
        """What is known of the refused request's method and target (for the error's ``request``)."""
        url: bytes = getattr(self, "url", b"")  # set once a request begins, grown as its target is read
        if not url or self.parser is None:
            return b""  # before its target, httptools has no method to tell
        return self.parser.get_method() + b" " + url[:1024] + b" "


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def serve(
    app: Any,
    listener: socket.socket,
    stop: asyncio.Event,
    tls: ssl.SSLContext | None,
    settings: GatewaySettings,
) -> None:
    """Serve ``app`` on ``listener`` until ``stop``, then let open requests finish (1 s at most)."""
    loop = asyncio.get_running_loop()
    config = uvicorn.Config(
        app,
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        ws_max_size=MAX_FRAME,
        timeout_keep_alive=settings.keep_alive_timeout,  # type: ignore[arg-type]  # a number of seconds
        timeout_graceful_shutdown=1,
    )
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)  # "off": as ``Server.serve`` sets it up
    await server.startup(sockets=[])  # no listener of its own: the acceptor hands it connections
    ticking = loop.create_task(server.main_loop())  # uvicorn's clock: the Date header, once a second

    async def connection(sock: socket.socket) -> None:
        closed: asyncio.Future[None] = loop.create_future()

        def protocol() -> EdgeHttpToolsProtocol:
            return EdgeHttpToolsProtocol(config, server.server_state, {}, settings=settings, closed=closed)

        try:
            if tls is None:
                await loop.connect_accepted_socket(protocol, sock)
            else:
                await loop.connect_accepted_socket(
                    protocol, sock, ssl=tls, ssl_handshake_timeout=settings.headers_timeout
                )
        except OSError:  # the TLS handshake failed or timed out, or the client left
            return
        await closed

    acceptor = Acceptor(listener, settings.max_connections, connection)
    try:
        await acceptor.run_until(stop)
    finally:
        server.should_exit = True
        await ticking
        await server.shutdown()  # idle connections close, busy ones after their answer (1 s at most)
        await acceptor.close(1.0)

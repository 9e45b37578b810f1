"""Uvicorn (httptools) under the kernel's edge: the same refusals in the error shape, deadlines and connection cap.

Uvicorn answers a request httptools cannot parse, and its WebSocket library a broken handshake, with a
plain-text 400, puts no bound on a request's head, gives a slow head all the time it wants, and keeps a
new connection that sends nothing open for ever (its keep-alive clock starts only after a first
answer). ``EdgeHttpToolsProtocol`` fixes all four: 400 ``InputError`` (naming httptools' reason),
431 ``RequestHeaderFieldsTooLargeError`` / 414 ``UriTooLongError`` over ``maxHeaderSize``, 408
``RequestTimeoutError`` after ``headersTimeout``, each in the error shape and closing the connection;
``keepAliveTimeout`` from the moment a connection opens. Connections come from the kernel's accept
loop (``kernel.gateway.acceptor``), so ``maxConnections`` holds here too. ``EdgeWebSocketProtocol``
lingers after refusing an oversized frame, so the client reads the 1009; ``_OneSend`` sends a small
answer's head and body in one write. A retiring gateway (``UvicornEdge.retire``) answers every request
with ``Connection: close`` and closes a connection idle for ``RETIRE_IDLE`` seconds: its clients move to
another gateway between two requests, never in the middle of one.

The head is measured as httptools reports it (the request target, each complete field) and, for a
head spread over several reads, by the bytes of every read after its first: a head over the limit is
refused at most one read (256 KiB) late, never a head under it.

Pinned: checked against uvicorn 0.55.0 (the lock; ``pyproject.toml`` bounds it ``>=0.30,<0.56``).
``serve`` sets uvicorn's server up as its ``Server._serve`` does; ``tests/gateway/test_server_pins.py``
holds a digest of every uvicorn method overridden here or relied on (``RequestResponseCycle.send``
writes a head, then a body) and of ``Server._serve``, and fails naming the method when an upgrade
changes one.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from array import array
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import httptools
import uvicorn
from hypercorn.protocol.ws_stream import Handshake
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from kernel.gateway.acceptor import RETIRE_IDLE, Acceptor, connect
from kernel.gateway.limits import BAD_WEBSOCKET_HANDSHAKE, server_refusal
from kernel.settings import GatewaySettings
from kernel.transport.sockets import MAX_FRAME  # a WebSocket message travels to the worker as one frame


class _Parser(httptools.HttpRequestParser):
    """httptools' parser, keeping why it refused a request (uvicorn passes on only that it did)."""

    def __init__(self, protocol: EdgeHttpToolsProtocol) -> None:
        super().__init__(protocol)
        self._protocol = protocol

    def feed_data(self, data: bytes | bytearray | memoryview | array[int]) -> None:
        try:
            super().feed_data(data)
        except httptools.HttpParserError as exc:
            self._protocol.refuse_as(400, f"Malformed HTTP request: {exc}")
            raise


class EdgeWebSocketProtocol(WebSocketsSansIOProtocol):
    """Uvicorn's WebSocket protocol (websockets, sans I/O) with a lingering close after a frame it refuses.

    On a message over ``ws_max_size`` (or any framing error) uvicorn writes its close frame (1009, ...)
    and closes the connection at once, while the client is still sending the refused message: the
    unread bytes make the closing socket send a reset, and the client loses the close frame with the
    reason. Here the close frame is written, what the client still sends is read and dropped, and the
    connection closes when the client closes it or ``close_timeout`` (10 s) passes.
    """

    _lingering = False

    def handle_parser_exception(self) -> None:  # uvicorn's, but for the lingering close
        assert self.conn.close_sent is not None
        code, reason = self.conn.close_sent.code, self.conn.close_sent.reason
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = self._lingering = True
        self.close_timer = self.loop.call_later(self.close_timeout, self.transport.close)

    def data_received(self, data: bytes) -> None:
        if not self._lingering:
            super().data_received(data)

    def eof_received(self) -> None:
        if self._lingering:
            self.transport.close()


#: body bytes up to which a held head is joined to the first body write (above it, two sends are cheaper)
_JOIN_UP_TO = 64 * 1024


class _OneSend:
    """The transport of one HTTP/1.1 answer, as uvicorn's cycle sees it: the head waits for the body.

    Uvicorn writes an answer's head and its body in two calls, so a small answer leaves in two
    ``send`` calls (two segments, two wake-ups of the client). Here the first write is held until the
    next one, or until the event loop's turn ends (an answer streamed later), so a small answer
    leaves in one.
    """

    __slots__ = ("_first", "_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._first = True
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        if self._first:  # held for the rest of this turn
            self._first = False
            self._held = data
            self._loop.call_soon(self._flush)
            return
        held = self._held
        if held is None:
            self._transport.write(data)
            return
        self._held = None
        if len(data) <= _JOIN_UP_TO:
            self._transport.write(held + data)
        else:
            self._transport.write(held)
            self._transport.write(data)

    def _flush(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            self._transport.write(held)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        self._flush()
        self._transport.close()


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
        retiring: Callable[[], bool] = lambda: False,
    ) -> None:
        super().__init__(config, server_state, app_state)
        self._retiring = retiring
        self.parser = _Parser(self)
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
        if not Handshake(list(self.scope["headers"]), "1.1").is_valid():  # else websockets answers a bare 400
            self._refusal = (400, BAD_WEBSOCKET_HANDSHAKE)
            self.send_400_response("")
            return
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
        before = self.cycle
        super().on_headers_complete()
        if self.cycle is not before:  # a new request's (not a WebSocket handshake, which has none)
            self.cycle.transport = _OneSend(self.transport, self.loop)  # type: ignore[assignment]
            if self._retiring():
                self.cycle.keep_alive = False  # answered with "Connection: close"

    def retire(self) -> None:
        """The gateway retires: the answer in progress closes the connection; an idle one closes soon."""
        self.timeout_keep_alive = min(self.timeout_keep_alive, RETIRE_IDLE)  # type: ignore[assignment]  # seconds, as keepAliveTimeout
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False
        elif self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = self.loop.call_later(RETIRE_IDLE, self.timeout_keep_alive_handler)

    def _grow(self, size: int) -> None:
        self._size += size
        if self._size > self._limit:
            self._refusal = self._too_large()
            raise _Refused

    # -- refusals -------------------------------------------------------------------------
    def refuse_as(self, status: int, message: str) -> None:
        """The answer to the refusal coming (a limit's, set first, stands)."""
        if self._refusal is None:
            self._refusal = (status, message)

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
        headers, body = server_refusal(status, message, self._request_line())
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


class UvicornEdge:
    """Uvicorn's server state without a listener of its own: serves the connections it is handed."""

    def __init__(self, app: Any, settings: GatewaySettings) -> None:
        self._settings = settings
        self._config = uvicorn.Config(
            app,
            http="httptools",
            ws="websockets-sansio",  # named, so the choice never depends on what else is installed
            lifespan="off",
            proxy_headers=False,  # X-Forwarded-*: the edge's own, by backend.trustProxy (never uvicorn's trust of 127.0.0.1)
            access_log=False,
            log_level="warning",
            ws_max_size=MAX_FRAME,
            timeout_keep_alive=settings.keep_alive_timeout,  # type: ignore[arg-type]  # a number of seconds
            timeout_graceful_shutdown=1,
        )
        self._config.load()
        self._config.ws_protocol_class = EdgeWebSocketProtocol
        self._server = uvicorn.Server(self._config)
        self._server.lifespan = self._config.lifespan_class(self._config)  # "off": as ``Server.serve`` sets it up
        self._ticking: asyncio.Task[None] | None = None
        self.retiring = False

    async def start(self) -> None:
        await self._server.startup(sockets=[])  # no listener of its own: the acceptor hands it connections
        self._ticking = asyncio.get_running_loop().create_task(self._server.main_loop())  # the Date header's clock

    def _protocol(self, closed: asyncio.Future[None]) -> EdgeHttpToolsProtocol:
        server_state = self._server.server_state
        return EdgeHttpToolsProtocol(
            self._config, server_state, {}, settings=self._settings, closed=closed, retiring=lambda: self.retiring
        )

    def retire(self) -> None:
        """Take no new request on a kept-alive connection (see the module doc); the open ones go on."""
        self.retiring = True
        for connection in list(self._server.server_state.connections):
            if isinstance(connection, EdgeHttpToolsProtocol):  # a WebSocket's is closed by the gateway
                connection.retire()

    async def connection(self, sock: socket.socket, tls: ssl.SSLContext | None) -> None:
        """Serve an accepted socket (over TLS when given a context) until it closes."""
        closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if await connect(sock, lambda: self._protocol(closed), tls, self._settings.headers_timeout) is not None:
            await closed

    async def take(self, transport: asyncio.Transport, data: bytes) -> None:
        """Serve a connection already open, whose first ``data`` was read (reading paused since), until it closes."""
        closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        protocol = self._protocol(closed)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        transport.resume_reading()  # paused by whoever read ``data``; nothing is read before ``data`` is fed
        if data:
            protocol.data_received(data)
        await closed

    async def close(self) -> None:
        """Idle connections close, busy ones after their answer (1 s at most)."""
        self._server.should_exit = True
        if self._ticking is not None:
            await self._ticking
        await self._server.shutdown()


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
    edge = UvicornEdge(app, settings)
    await edge.start()
    acceptor = Acceptor(listener, settings.max_connections, lambda sock: edge.connection(sock, tls))
    try:
        await acceptor.run_until(stop)
        await acceptor.linger(linger(), edge.retire)
    finally:
        await edge.close()
        await acceptor.close(1.0)

"""Hypercorn under the kernel's edge: its own HTTP/1.1 refusals in the error shape, a head deadline, a connection cap.

Hypercorn's ``serve`` takes a listener and accepts without bound, and its HTTP/1.1 protocol answers a
request it cannot parse with an empty 400/431. So the gateway runs hypercorn's per-connection server
(``TCPServer``) under its own accept loop (``kernel.gateway.acceptor``: at most
``backend.gateway.maxConnections``, TLS by the kernel's context) with a subclass of its HTTP/1.1
protocol that

- answers what h11 refuses (a broken request line, bad header syntax, bad chunked framing, a head over
  ``maxHeaderSize``) in the error shape: 400 ``InputError``, 431 ``RequestHeaderFieldsTooLargeError``
  (414 ``UriTooLongError`` when the request line alone is over it), 400 also for a transfer coding
  other than chunked, always closing the connection; so is a WebSocket
  handshake hypercorn's WebSocket stream would refuse with an empty 400;
- gives a request ``headersTimeout`` seconds from its first byte to the end of its head, then answers
  408 ``RequestTimeoutError`` and closes (a slowloris client); before the first byte, and between
  requests, the connection is idle and ``keepAliveTimeout`` closes it silently.

Everything else is hypercorn's own, configured from ``backend.gateway`` (``h11_max_incomplete_size``,
``h2_max_header_list_size``, ``h2_max_concurrent_streams``, ``keep_alive_timeout``). Its
``read_timeout`` stays off: it would also cut a client waiting, silent, for a slow answer. There is no
lifespan (as with uvicorn's ``lifespan="off"``): the gateway's app has no start-up or shutdown handlers.
Pinned: checked against hypercorn 0.18.0 and h11 0.16.0 (the lock; ``pyproject.toml`` bounds hypercorn
``>=0.17,<0.19``). ``_TCPServer.run`` is hypercorn 0.18.0's ``TCPServer.run`` with the protocol swapped;
``tests/gateway/test_server_pins.py`` holds a digest of every hypercorn and h11 method overridden or
copied here, and fails naming the method when an upgrade changes one.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import ssl
from collections.abc import Callable
from typing import Any

import h11
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.asyncio.task_group import TaskGroup
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.asyncio.worker_context import WorkerContext
from hypercorn.config import Config
from hypercorn.events import Closed, Event, RawData, Updated
from hypercorn.protocol import ProtocolWrapper
from hypercorn.protocol.h11 import H2ProtocolAssumedError, H11Protocol
from hypercorn.protocol.ws_stream import Handshake
from hypercorn.typing import ConnectionState
from hypercorn.utils import parse_socket_addr

from kernel.gateway.acceptor import RETIRE_IDLE, Acceptor, connect
from kernel.gateway.limits import BAD_WEBSOCKET_HANDSHAKE, server_refusal
from kernel.settings import GatewaySettings
from kernel.transport.sockets import MAX_FRAME  # a WebSocket message travels to the worker as one frame

#: bytes of a request's start kept to name its method and URL in a refusal
_HEAD_KEPT = 1024
#: how h11 quotes the bytes it refused (``bytearray(b'...')``): the quoted bytes are enough
_BYTEARRAY = re.compile(r"bytearray\((b?'.*?'|b?\".*?\")\)")


class EdgeConfig(Config):
    """Hypercorn's config, with the kernel's limit hypercorn has no key for."""

    #: seconds from a request's first byte to the end of its head (``backend.gateway.headersTimeout``)
    headers_timeout: float = 20.0


def edge_config(settings: GatewaySettings, errorlog: logging.Logger) -> EdgeConfig:
    """Hypercorn's config from ``backend.gateway``."""
    config = EdgeConfig()
    config.accesslog = None
    config.errorlog = errorlog
    config.graceful_timeout = 1.0
    config.websocket_max_message_size = MAX_FRAME
    config.h11_max_incomplete_size = settings.max_header_size
    config.h2_max_header_list_size = settings.max_header_size
    config.h2_max_concurrent_streams = settings.max_concurrent_streams
    config.keep_alive_timeout = settings.keep_alive_timeout
    config.ssl_handshake_timeout = settings.headers_timeout
    config.headers_timeout = settings.headers_timeout
    return config


class _Connection(h11.Connection):
    """h11's connection, keeping the error it refused a request with (hypercorn passes on only its status)."""

    error: h11.RemoteProtocolError | None = None

    def next_event(self) -> Any:
        try:
            return super().next_event()
        except h11.RemoteProtocolError as exc:
            self.error = exc
            raise


class EdgeH11Protocol(H11Protocol):
    """Hypercorn's HTTP/1.1 with refusals in the error shape and a deadline on each request's head."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connection = _Connection(h11.SERVER, max_incomplete_event_size=self.config.h11_max_incomplete_size)
        self._head_clock: asyncio.TimerHandle | None = None
        self._head = b""  # the first bytes of the request being read
        self._head_size = 0  # bytes received since the request's first: its head is at most that long

    async def handle(self, event: Event) -> None:
        if isinstance(event, RawData):
            if self.stream is None and isinstance(self.connection, h11.Connection) and event.data:
                if self._head_clock is None and self.connection.their_state is h11.IDLE:
                    self._head = event.data[:_HEAD_KEPT]
                    self._head_size = len(event.data)
                    timeout = getattr(self.config, "headers_timeout", EdgeConfig.headers_timeout)
                    self._head_clock = asyncio.get_running_loop().call_later(timeout, self._head_too_slow, timeout)
                    await self.send(Updated(idle=False))  # hypercorn's keep-alive clock stops: this one runs
                else:
                    if len(self._head) < _HEAD_KEPT:
                        self._head += event.data[: _HEAD_KEPT - len(self._head)]
                    self._head_size += len(event.data)
        elif isinstance(event, Closed):
            self._stop_head_clock()
        await super().handle(event)

    async def _check_protocol(self, event: h11.Request) -> None:
        """The head is complete (hypercorn checks it for an HTTP/2 upgrade before anything else)."""
        self._stop_head_clock()
        self._head = event.method + b" " + event.target[:_HEAD_KEPT] + b" "
        try:
            await super()._check_protocol(event)
        except H2ProtocolAssumedError:
            await self.send(Updated(idle=True))  # HTTP/2 by prior knowledge: idle until its first stream
            raise

    async def _create_stream(self, request: h11.Request) -> None:
        """The request goes to the app, unless its head is over the limit (h11 checks only one still incomplete)."""
        limit = self.config.h11_max_incomplete_size
        if self._head_size > limit:  # it came with more in one read: measure it
            line = len(request.method) + len(request.target) + 11  # "GET / HTTP/1.1\r\n"
            size = line + sum(len(name) + len(value) + 4 for name, value in request.headers.raw_items()) + 2
            if size > limit:
                await self._refuse(*self._too_large(line > limit))
                await self.send(Closed())
                return
        if request.method == b"GET" and _is_websocket(request) and not _handshake_ok(request):
            await self._refuse(400, BAD_WEBSOCKET_HANDSHAKE)
            await self.send(Closed())
            return
        await super()._create_stream(request)

    def _too_large(self, request_line: bool) -> tuple[int, str]:
        limit = self.config.h11_max_incomplete_size
        if request_line:
            return 414, f"The request line is over the limit of {limit} bytes"
        return 431, f"The request head is over the limit of {limit} bytes"

    def _stop_head_clock(self) -> None:
        if self._head_clock is not None:
            self._head_clock.cancel()
            self._head_clock = None

    def _head_too_slow(self, timeout: float) -> None:
        # ``_head_clock`` keeps the spent handle until the refusal is sent: a byte read meanwhile must not
        # take itself for a new request's first and replace ``_head`` (a refusal naming no request, seen in CI)
        self.task_group.spawn(self._refuse_slow_head, timeout)

    async def _refuse_slow_head(self, timeout: float) -> None:
        conn = self.connection
        if self.stream is not None or not isinstance(conn, h11.Connection) or conn.their_state is not h11.IDLE:
            return  # the head came in after all (between the clock and this task)
        if conn.our_state is h11.IDLE:
            await self._refuse(408, f"The request head did not arrive within {timeout:g}s")
        await self.send(Closed())

    async def _send_error_response(self, status_code: int) -> None:
        """What h11 refused, in the error shape (hypercorn closes the connection after it)."""
        conn = self.connection
        if status_code == 431:
            status_code, message = self._too_large(b"\n" not in conn.trailing_data[0])
        else:
            error = conn.error if isinstance(conn, _Connection) else None
            message = _BYTEARRAY.sub(r"\1", str(error)) if error is not None else ""
            if status_code == 501:  # a transfer coding h11 cannot frame: a client's error, 400 as under uvicorn
                status_code = 400  # (RFC 9112 6.3: a request whose final coding is not chunked MUST get 400)
            if status_code == 400:
                message = f"Malformed HTTP request: {message}" if message else "Malformed HTTP request"
        await self._refuse(status_code, message[:300])

    async def _refuse(self, status: int, message: str) -> None:
        headers, body = server_refusal(status, message, self._head)
        headers += self.config.response_headers("h11")
        await self._send_h11_event(h11.Response(status_code=status, headers=headers))
        await self._send_h11_event(h11.Data(data=body))
        await self._send_h11_event(h11.EndOfMessage())


def _is_websocket(request: h11.Request) -> bool:
    """Whether hypercorn takes ``request`` for a WebSocket handshake (``H11Protocol._create_stream``'s test)."""
    upgrade = connection = b""
    for name, value in request.headers:
        if name == b"upgrade":
            upgrade = value.strip().lower()
        elif name == b"connection":
            connection = value.lower()
    return upgrade == b"websocket" and any(token.strip() == b"upgrade" for token in connection.split(b","))


def _handshake_ok(request: h11.Request) -> bool:
    """Whether hypercorn's WebSocket stream would accept the handshake (else it answers an empty 400)."""
    return Handshake(list(request.headers), request.http_version.decode()).is_valid()


class _ProtocolWrapper(ProtocolWrapper):
    """Hypercorn's protocol switch, with the kernel's HTTP/1.1 (HTTP/2 stays hypercorn's)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if isinstance(self.protocol, H11Protocol):
            self.protocol = EdgeH11Protocol(
                self.app,
                self.config,
                self.context,
                self.task_group,
                self.state,
                self.ssl,
                self.client,
                self.server,
                self.send,
            )


class _TCPServer(TCPServer):
    """Hypercorn's per-connection server, with ``_ProtocolWrapper``, closing as soon as the client has."""

    async def run(self) -> None:  # hypercorn's TCPServer.run, but for the protocol wrapper's class and the end
        socket = self.writer.get_extra_info("socket")
        try:
            client = parse_socket_addr(socket.family, socket.getpeername())
            server = parse_socket_addr(socket.family, socket.getsockname())
            ssl_object = self.writer.get_extra_info("ssl_object")
            if ssl_object is not None:
                tls = True
                alpn_protocol = ssl_object.selected_alpn_protocol()
            else:
                tls = False
                alpn_protocol = "http/1.1"

            async with TaskGroup(self.loop) as task_group:
                self._task_group = task_group
                self.protocol = _ProtocolWrapper(
                    self.app,
                    self.config,
                    self.context,
                    task_group,
                    ConnectionState(self.state),
                    tls,
                    client,
                    server,
                    self.protocol_send,
                    alpn_protocol,
                )
                await self.protocol.initiate()
                await self.idle_task.restart(task_group, self._idle_timeout)
                await self._read_data()
                # The client closed its side: no next request can come, so the keep-alive clock
                # must not hold the task group (hypercorn's does, for keep_alive_timeout: a closed
                # connection sat in CLOSE-WAIT for 75 s, 13 KiB each, found by the soak).
                await self.idle_task.stop()
        except OSError:
            pass
        finally:
            await self._close()


def _streams_of(transport: asyncio.Transport, data: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """An open connection as asyncio streams, ``data`` already read from it, reading paused since (as
    ``open_connection`` makes them)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    transport.resume_reading()  # paused by whoever read ``data``; nothing is read before ``data`` is fed
    if data:
        protocol.data_received(data)
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


class HypercornEdge:
    """Hypercorn's per-connection servers without a listener of their own: serves the connections it is handed."""

    def __init__(self, app: Any, settings: GatewaySettings) -> None:
        self.config = edge_config(settings, logging.getLogger("kernel.gateway.http"))
        self._context = WorkerContext(None)
        self._app = ASGIWrapper(app)
        self._state: dict[str, Any] = {}
        self._retiring: asyncio.Task[None] | None = None

    async def connection(self, sock: socket.socket, tls: ssl.SSLContext | None) -> None:
        """Serve an accepted socket (over TLS when given a context) until it closes."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport = await connect(sock, lambda: protocol, tls, self.config.ssl_handshake_timeout)
        if transport is not None:
            await self._serve(reader, asyncio.StreamWriter(transport, protocol, reader, loop))

    async def take(self, transport: asyncio.Transport, data: bytes) -> None:
        """Serve a connection already open, whose first ``data`` was read, until it closes."""
        await self._serve(*_streams_of(transport, data))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        await _TCPServer(self._app, loop, self.config, self._context, self._state, reader, writer)

    async def close(self) -> None:
        """Idle connections close; busy ones after their answer (``graceful_timeout``, with the acceptor's close)."""
        await self._context.terminated.set()

    def retire(self) -> None:
        """A retiring gateway: every HTTP/1.1 answer says ``Connection: close`` (hypercorn does past
        ``keep_alive_max_requests``); ``RETIRE_IDLE`` seconds later, the connections still idle close and
        HTTP/2 ones get a GOAWAY (``close``)."""
        self.config.keep_alive_max_requests = 0
        self._retiring = asyncio.get_running_loop().create_task(self._close_idle())

    async def _close_idle(self) -> None:
        await asyncio.sleep(RETIRE_IDLE)
        await self.close()


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
    edge = HypercornEdge(app, settings)
    acceptor = Acceptor(listener, settings.max_connections, lambda sock: edge.connection(sock, tls))
    try:
        await acceptor.run_until(stop)
        await acceptor.linger(linger(), edge.retire)
    finally:
        await edge.close()  # idle connections close, busy ones after their answer
        await acceptor.close(edge.config.graceful_timeout)

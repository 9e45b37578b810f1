"""The edge's limits on what a client sends, and the error shape for what the HTTP server refuses itself.

``LimitsMiddleware`` wraps the whole gateway app, under any server and protocol (HTTP/1.1, HTTP/2):

- a request target longer than ``backend.gateway.maxUrlLength`` gets 414 ``UriTooLongError``;
- a request with more than ``backend.gateway.maxHeaders`` header fields gets 431
  ``RequestHeaderFieldsTooLargeError``, before any other layer reads them;
- an HTTP/2 request whose head (as HTTP/1 would write it) is over ``maxHeaderSize`` gets 431
  ``RequestHeaderFieldsTooLargeError`` (an HTTP/1 head is measured by the server, as it reads it;
  hypercorn advertises the limit to HTTP/2 clients but the h2 library enforces only its own 64 KiB);
- a request body that pauses longer than ``bodyIdleTimeout``, or keeps the gateway waiting longer than
  ``bodyTimeout`` in all, fails the request with ``RequestTimeoutError``: the app's error handling
  answers 408 in the error shape, or, once the answer has started, the connection is cut
  (``BodyBrokenOff``, logged as one warning line).

``server_refusal`` builds the error shape for an answer the server's own protocol code gives before any app
runs (a malformed request, a head over ``maxHeaderSize``, a head sent too slowly): the server modules
(``kernel.gateway.hypercorn_edge``, ``kernel.gateway.uvicorn_edge``) write it.
"""

from __future__ import annotations

import asyncio
import json
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kernel import errors
from kernel.gateway.middleware.errors import deny_websocket, error_answer, send_error
from kernel.gateway.relay import AnswerBrokenOff
from kernel.settings import GatewaySettings

#: characters of a refused request's URL echoed in the answer
_ECHOED_URL = 256
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,32}")


class BodyBrokenOff(AnswerBrokenOff):
    """A request body stalled after the answer had started: the connection is cut (one warning line)."""


#: a server's refusal of a WebSocket handshake its WebSocket stream would refuse with a bare 400
BAD_WEBSOCKET_HANDSHAKE = "Invalid WebSocket handshake: it needs Sec-WebSocket-Key and -Version: 13"


def server_refusal(status: int, message: str, head: bytes = b"") -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Headers and JSON body of the error shape for ``status``, given the first bytes of the refused request.

    The method and URL come from its request line when that can be read (else they are empty); a long
    URL is cut short. The answer closes the connection: after a refusal its framing cannot be trusted.
    """
    method, url = "", ""
    parts = head.split(b"\r\n", 1)[0].split(b"\n", 1)[0].split(b" ", 2)
    if len(parts) > 1 and _TOKEN.fullmatch(parts[0]):  # a method, then (part of) a target
        method = parts[0].decode("ascii")
        url = parts[1][:_ECHOED_URL].decode("latin-1") + ("..." if len(parts[1]) > _ECHOED_URL else "")
    name = errors.name_for_status(status)
    body = json.dumps(errors.error_body(name, message, method, url, status=status)).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    return headers, body


def limited(app: ASGIApp, settings: GatewaySettings) -> ASGIApp:
    """``app`` under the limits of ``backend.gateway`` (the outermost layer of every gateway app)."""
    return LimitsMiddleware(
        app,
        max_url_length=settings.max_url_length,
        max_header_size=settings.max_header_size,
        max_headers=settings.max_headers,
        body_idle_timeout=settings.body_idle_timeout,
        body_timeout=settings.body_timeout,
    )


class LimitsMiddleware:
    """Outermost: the URL length and header limits, and the time a request body may take (see the module doc)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_url_length: int,
        max_header_size: int,
        max_headers: int,
        body_idle_timeout: float,
        body_timeout: float,
    ) -> None:
        self.app = app
        self.max_url_length = max_url_length
        self.max_header_size = max_header_size
        self.max_headers = max_headers
        self.body_idle_timeout = body_idle_timeout
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        query = scope.get("query_string", b"")
        length = len(scope.get("raw_path") or scope["path"].encode()) + (len(query) + 1 if query else 0)
        refused: errors.KernelError | None = None
        if length > self.max_url_length:
            refused = errors.UriTooLongError(
                f"The request target of {length} bytes is over the limit of {self.max_url_length}"
            )
        elif len(scope["headers"]) > self.max_headers:
            refused = errors.RequestHeaderFieldsTooLargeError(
                f"{len(scope['headers'])} header fields are over the limit of {self.max_headers}"
            )
        elif not scope.get("http_version", "1.1").startswith("1"):  # HTTP/1's head is measured by the server
            size = length + 16 + sum(len(name) + len(value) + 4 for name, value in scope["headers"])
            if size > self.max_header_size:
                refused = errors.RequestHeaderFieldsTooLargeError(
                    f"The request head is over the limit of {self.max_header_size} bytes"
                )
        if refused is not None:
            if kind == "http":
                await send_error(send, scope, refused.name, refused.message)
            else:
                await deny_websocket(scope, send, *error_answer(scope, refused, dev=False))
            return
        if kind == "websocket" or not _may_have_body(scope):  # nothing to wait for: no clock
            await self.app(scope, receive, send)
            return
        body = _BodyClock(receive, self.body_idle_timeout, self.body_timeout, scope.get("http_version", "1.1"))
        await self.app(scope, body.receive, body.tracking(send))


def _may_have_body(scope: Scope) -> bool:
    """Whether a request has a body to wait for (HTTP/1 announces one; HTTP/2 may send one unannounced)."""
    if not scope.get("http_version", "1.1").startswith("1"):
        return True
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
            return True
    return False


class _BodyClock:
    """``receive`` with the body's deadlines: only time spent waiting for the client counts."""

    __slots__ = ("_close", "_idle", "_left", "_receive", "_total", "answered", "done", "timed_out")

    def __init__(self, receive: Receive, idle: float, total: float, http_version: str) -> None:
        self._receive = receive
        self._idle = idle
        self._total = total
        self._left = total
        self._close = http_version.startswith("1")  # HTTP/2 has no Connection header (its stream just ends)
        self.done = False  # the whole body is in: what follows (a disconnect) may take any time
        self.answered = False
        self.timed_out = False

    def tracking(self, send: Send) -> Send:
        async def tracking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.answered = True
                if self.timed_out and self._close:  # the rest of the body may still come: end the connection
                    message = {**message, "headers": [*message.get("headers", ()), (b"connection", b"close")]}
            await send(message)

        return tracking_send

    async def receive(self) -> Message:
        if self.done:
            return await self._receive()
        loop = asyncio.get_running_loop()
        limit = min(self._idle, self._left)
        started = loop.time()
        try:
            async with asyncio.timeout(limit):
                message = await self._receive()
        except TimeoutError:
            self.timed_out = True
            if limit < self._idle:
                problem = f"request body took over {self._total:g}s to arrive"
            else:
                problem = f"request body paused for over {self._idle:g}s"
            if self.answered:
                raise BodyBrokenOff(f"the {problem} after the answer had started: the connection was cut") from None
            raise errors.RequestTimeoutError(f"The {problem}") from None
        self._left -= loop.time() - started
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.done = True
        return message

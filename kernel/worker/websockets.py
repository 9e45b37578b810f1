"""One WebSocket inside a worker: the ASGI ``websocket`` scope over protocol messages.

The gateway holds the client's connection; the worker sees the handshake as a
``RequestHead`` with ``websocket`` set. What the handler does becomes messages
back: ``websocket.accept`` a ``WsAccept``, each ``websocket.send`` a
``WsMessage`` (flow-controlled like body chunks: at most ``WINDOW``
unacknowledged), ``websocket.close`` a ``WsClose``. Refusing the handshake
(closing before accepting, raising, or an ASGI denial response) becomes the
HTTP answer to the upgrade, in the kernel's error shape when it is an error.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from starlette.websockets import WebSocketDisconnect

from kernel.flow import Acker, CreditWindow
from kernel.protocol import Credit, RequestHead, ResponseHead, WsAccept, WsClose, WsMessage, encode
from kernel.transport.sockets import MAX_FRAME
from kernel.worker.streams import Send

#: close codes (RFC 6455): the peer left; the handler failed; the worker is replaced (reconnect)
GOING_AWAY = 1001
INTERNAL_ERROR = 1011
SERVICE_RESTART = 1012


class WebSocketStream:
    """State of one WebSocket: messages from the client, credit for messages to it, who closed."""

    __slots__ = (
        "_acker",
        "_connected",
        "_credit",
        "_denial",
        "_inbox",
        "_send",
        "_waiter",
        "accepted",
        "closed",
        "head",
        "id",
        "task",
    )

    def __init__(self, head: RequestHead, send: Send) -> None:
        self.id = head.stream
        self.head = head
        self._send = send
        self.task: asyncio.Task[None] | None = None
        self._inbox: deque[dict[str, Any]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._credit = CreditWindow()  # messages the gateway will take
        self._acker = Acker()  # client messages the handler read
        self._connected = False  # the handler took websocket.connect
        self._denial: tuple[int, Any, list[bytes]] | None = None  # status, headers, body so far
        self.accepted = False
        #: the close code once either side closed (the peer's, or the one the handler sent)
        self.closed: int | None = None

    # -- from the connection ------------------------------------------------
    def feed_message(self, data: bytes, text: bool) -> None:
        self._inbox.append(
            {"type": "websocket.receive", "text": data.decode()}
            if text
            else {"type": "websocket.receive", "bytes": data}
        )
        self._wake()

    def feed_close(self, code: int, reason: str) -> None:
        """The client closed (or the gateway stops): the handler reads ``websocket.disconnect``."""
        if self.closed is None:
            self.closed = code
        self._inbox.append({"type": "websocket.disconnect", "code": code, "reason": reason})
        self._wake()
        self._credit.wake()

    def grant(self, chunks: int) -> None:
        self._credit.grant(chunks)

    def disconnect(self) -> None:
        """The gateway gave up on the handshake (``End``): stop the handler."""
        self.feed_close(GOING_AWAY, "")
        if self.task is not None and not self.task.done() and not self.accepted:
            self.task.cancel()

    def going_away(self) -> None:
        """The worker stops (replaced, recycled, or the kernel stops): the client may reconnect at once."""
        if self.closed is None:
            if self.accepted:
                self._send(encode(WsClose(self.id, SERVICE_RESTART, "the plugin's worker is stopping")), None)
            self.feed_close(SERVICE_RESTART, "the plugin's worker is stopping")

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    # -- ASGI ------------------------------------------------------------------
    def scope(self, root_path: str, principal_key: str, app: Any) -> dict[str, Any]:
        h = self.head
        offered = [
            p.strip()
            for name, value in h.headers
            if name == b"sec-websocket-protocol"
            for p in value.decode("latin-1").split(",")
            if p.strip()
        ]
        return {
            "type": "websocket",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": h.http_version,
            "scheme": "wss" if h.scheme in ("https", "wss") else "ws",
            "path": h.path,
            "raw_path": h.raw_path or h.path.encode(),
            "query_string": h.query,
            "root_path": root_path,
            "headers": h.headers,
            "client": h.client,
            "server": None,
            "subprotocols": offered,
            "state": {},
            "app": app,
            "extensions": {"websocket.http.response": {}},
            principal_key: h.principal,
        }

    async def receive(self) -> dict[str, Any]:
        if not self._connected:
            self._connected = True
            return {"type": "websocket.connect"}
        while not self._inbox:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
            self._waiter = None
        message = self._inbox.popleft()
        if message["type"] == "websocket.receive":
            credit = self._acker.consumed(True)
            if credit and self.closed is None:
                self._send(encode(Credit(self.id, credit)), None)
        return message

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "websocket.send":
            if not self.accepted:
                raise RuntimeError("websocket.send before websocket.accept")
            if self.closed is not None:
                raise WebSocketDisconnect(self.closed)
            text = message.get("text")
            data: bytes = text.encode() if text is not None else message.get("bytes") or b""
            if len(data) > MAX_FRAME:
                raise ValueError(f"WebSocket message of {len(data)} bytes is over the limit of {MAX_FRAME}")
            await self._credit.acquire(self._stopped)
            self._send(encode(WsMessage(self.id, text is not None)), data)
        elif kind == "websocket.accept":
            if self.accepted or self.closed is not None:
                raise RuntimeError("websocket.accept sent twice, or after close")
            self.accepted = True
            headers = list(message.get("headers") or [])
            self._send(encode(WsAccept(self.id, message.get("subprotocol"), headers)), None)
        elif kind == "websocket.close":
            if self.closed is None:
                self.closed = message.get("code") or 1000
                self._send(encode(WsClose(self.id, self.closed, message.get("reason") or "")), None)
        elif kind == "websocket.http.response.start" and not self.accepted:
            self._denial = (message["status"], list(message.get("headers") or []), [])
        elif kind == "websocket.http.response.body" and self._denial is not None:
            status, headers, parts = self._denial
            parts.append(message.get("body", b""))
            if not message.get("more_body", False):
                self.closed = 1000
                self._send(encode(ResponseHead(self.id, status, headers, b"".join(parts))), None)

    async def finish(self) -> None:
        """The handler returned: close what it left open (the handshake unanswered is refused)."""
        if self.closed is None:
            await self.send({"type": "websocket.close", "code": 1000})

    def fail(self, exc: BaseException, status: int, body: bytes) -> None:
        """Refuse the handshake with the error (``status``, JSON ``body``), or close with 1011."""
        if not self.accepted and self.closed is None:
            self.closed = INTERNAL_ERROR
            headers = [(b"content-type", b"application/json")]
            self._send(encode(ResponseHead(self.id, status, headers, body)), None)
        elif self.closed is None:
            self.closed = INTERNAL_ERROR
            self._send(encode(WsClose(self.id, INTERNAL_ERROR, "Internal error")), None)

    def _stopped(self) -> BaseException | None:
        return WebSocketDisconnect(self.closed) if self.closed is not None else None

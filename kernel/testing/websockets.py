"""WebSockets for the in-process test backend: an ASGI WebSocket client in the test's own event loop.

``backend.websocket_connect(path)`` opens a session on the composed gateway, as Starlette's test
client does (the same methods: ``send_text``, ``receive_json``, ``close``...), but ``async``: the
gateway, the in-memory transport and the plugin run in the test's loop, so the session must too. A
refused handshake raises ``WebSocketDenialResponse`` (the gateway's answer: its status and the error
shape), a close before the accept ``WebSocketDisconnect``, as with Starlette's test client.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
from starlette.types import ASGIApp, Message
from starlette.websockets import WebSocketDisconnect

__all__ = ["WebSocketDenialResponse", "WebSocketSession"]

#: seconds a receive waits for the server before the test fails (a test never hangs)
RECEIVE_TIMEOUT = 10.0
_DONE = "kernel.testing.done"


class WebSocketDenialResponse(httpx.Response, WebSocketDisconnect):  # type: ignore[misc]  # as Starlette's own
    """The HTTP answer that refused a WebSocket handshake (a 401, a 404... in the kernel's error shape)."""

    def __init__(self, status_code: int, headers: list[tuple[bytes, bytes]], content: bytes, url: str) -> None:
        request = httpx.Request("GET", url)
        httpx.Response.__init__(self, status_code, headers=headers, content=content, request=request)
        WebSocketDisconnect.__init__(self, 1008 if status_code < 500 else 1011)


class WebSocketSession:
    """One WebSocket to an ASGI app; ``async with`` it (the handshake on entry, a close on exit)."""

    def __init__(
        self,
        app: ASGIApp,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        subprotocols: Sequence[str] = (),
        timeout: float = RECEIVE_TIMEOUT,
    ) -> None:
        self._app = app
        self._timeout = timeout
        self._url = url
        parts = urlsplit(url)
        raw = [(b"host", (parts.netloc or "testserver").encode())]
        raw += [
            (b"connection", b"upgrade"),
            (b"upgrade", b"websocket"),
            (b"sec-websocket-version", b"13"),
            (b"sec-websocket-key", base64.b64encode(os.urandom(16))),
        ]
        if subprotocols:
            raw.append((b"sec-websocket-protocol", ", ".join(subprotocols).encode()))
        raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        self.scope: dict[str, Any] = {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "scheme": "ws",
            "server": ("testserver", 80),
            "client": ("127.0.0.1", 50000),
            "root_path": "",
            "path": unquote(parts.path or "/"),
            "raw_path": (parts.path or "/").encode(),
            "query_string": parts.query.encode(),
            "headers": raw,
            "subprotocols": list(subprotocols),
            "state": {},
            "extensions": {"websocket.http.response": {}},
        }
        self._to_app: asyncio.Queue[Message] = asyncio.Queue()
        self._from_app: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        #: what the server chose in its accept
        self.accepted_subprotocol: str | None = None
        self.extra_headers: list[tuple[bytes, bytes]] = []

    async def __aenter__(self) -> WebSocketSession:
        self._task = asyncio.get_running_loop().create_task(self._run())
        await self._to_app.put({"type": "websocket.connect"})
        message = await self._next()
        if message["type"] == "websocket.accept":
            self.accepted_subprotocol = message.get("subprotocol")
            self.extra_headers = list(message.get("headers", []))
            return self
        await self._finish()
        if message["type"] == "websocket.http.response.start":
            body = b""
            while True:
                part = await self._next()
                body += part.get("body", b"")
                if part["type"] != "websocket.http.response.body" or not part.get("more_body", False):
                    break
            raise WebSocketDenialResponse(message["status"], list(message.get("headers", [])), body, self._url)
        raise WebSocketDisconnect(message.get("code", 1000), message.get("reason") or "")

    async def __aexit__(self, *exc: object) -> None:
        if not self._closed:
            await self.close()
        await self._finish()

    async def _run(self) -> None:
        try:
            await self._app(self.scope, self._receive, self._from_app.put)
        finally:
            await self._from_app.put({"type": _DONE})

    async def _receive(self) -> Message:
        return await self._to_app.get()

    async def _next(self) -> Message:
        """The server's next message; its end without a close is an abnormal closure (1006)."""
        try:
            message = await asyncio.wait_for(self._from_app.get(), self._timeout)
        except TimeoutError:
            raise AssertionError(f"no message from the server within {self._timeout}s") from None
        if message["type"] == _DONE:
            await self._finish()
            return {"type": "websocket.close", "code": 1006, "reason": ""}
        return message

    async def _finish(self) -> None:
        """Let the app end (it was told of the close), then collect its error, if any."""
        task = self._task
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), self._timeout)
        except TimeoutError:
            task.cancel()
        self._task = None

    # -- the Starlette test session's methods, async ------------------------------------
    async def send(self, message: Message) -> None:
        await self._to_app.put(message)

    async def send_text(self, data: str) -> None:
        await self.send({"type": "websocket.receive", "text": data})

    async def send_bytes(self, data: bytes) -> None:
        await self.send({"type": "websocket.receive", "bytes": data})

    async def send_json(self, data: Any) -> None:
        await self.send_text(json.dumps(data, separators=(",", ":"), ensure_ascii=False))

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Close from the client's side (the app receives ``websocket.disconnect`` with ``code``)."""
        self._closed = True
        await self.send({"type": "websocket.disconnect", "code": code, "reason": reason})

    async def receive(self) -> Message:
        """The server's next message (``websocket.send`` or ``websocket.close``)."""
        return await self._next()

    async def _data(self) -> Message:
        message = await self._next()
        if message["type"] == "websocket.close":
            self._closed = True
            raise WebSocketDisconnect(message.get("code", 1000), message.get("reason") or "")
        return message

    async def receive_text(self) -> str:
        message = await self._data()
        return str(message["text"])

    async def receive_bytes(self) -> bytes:
        message = await self._data()
        return bytes(message["bytes"])

    async def receive_json(self) -> Any:
        message = await self._data()
        text = message.get("text")
        return json.loads(text if text is not None else message["bytes"].decode())

"""One request inside a worker: ASGI receive/send over protocol messages, with flow control."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from starlette.exceptions import HTTPException

from kernel import errors
from kernel.protocol import RequestBody, RequestHead, ResponseBody, ResponseHead, encode

CHUNK = 256 * 1024  # largest body chunk put on the wire
WINDOW = 16  # body chunks in flight per stream before the sender waits for credit

Send = Callable[[bytes], None]

_DISCONNECT = {"type": "http.disconnect"}


class Stream:
    """State of one request: queued request body, response credit, cancellation."""

    __slots__ = (
        "id", "head", "_send", "task", "_body", "_body_waiter", "_body_done", "_disconnected",
        "started", "finished", "_credit", "_credit_waiter", "_ack", "status",
        "_head_taken", "_start_headers",
    )

    def __init__(self, head: RequestHead, send: Send) -> None:
        self.id = head.stream
        self.head = head
        self._send = send
        self.task: asyncio.Task[None] | None = None
        self._body: deque[RequestBody] = deque()
        self._body_waiter: asyncio.Future[None] | None = None
        self._body_done = not head.more_body
        self._disconnected = False
        self.started = False
        self.finished = False
        self._credit = WINDOW
        self._credit_waiter: asyncio.Future[None] | None = None
        self._ack: Callable[[int], None] | None = None
        self.status = 0
        self._head_taken = False
        self._start_headers: Any = []

    # -- from the connection ------------------------------------------------
    def feed(self, chunk: RequestBody) -> None:
        self._body.append(chunk)
        self._wake_body()

    def grant(self, chunks: int) -> None:
        self._credit += chunks
        w = self._credit_waiter
        if w is not None and not w.done():
            w.set_result(None)

    def disconnect(self) -> None:
        self._disconnected = True
        self._wake_body()
        self.grant(0)
        if self.task is not None and not self.task.done():
            self.task.cancel()

    def _wake_body(self) -> None:
        w = self._body_waiter
        if w is not None and not w.done():
            w.set_result(None)

    # -- ASGI ------------------------------------------------------------------
    def scope(self, root_path: str, principal_key: str, app: Any) -> dict[str, Any]:
        h = self.head
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": h.http_version,
            "method": h.method,
            "scheme": h.scheme,
            "path": h.path,
            "raw_path": h.path.encode(),
            "query_string": h.query,
            "root_path": root_path,
            "headers": h.headers,
            "client": h.client,
            "server": None,
            "state": {},
            "app": app,
            principal_key: h.principal,
        }

    def set_acker(self, ack: Callable[[int], None]) -> None:
        self._ack = ack

    async def receive(self) -> dict[str, Any]:
        if not self._head_taken:
            # the first chunk travels inside the head
            self._head_taken = True
            return {"type": "http.request", "body": self.head.body, "more_body": self.head.more_body}
        while not self._body:
            if self._disconnected:
                return _DISCONNECT
            self._body_waiter = asyncio.get_running_loop().create_future()
            await self._body_waiter  # woken by a chunk or by the disconnect
            self._body_waiter = None
        chunk = self._body.popleft()
        if not chunk.more:
            self._body_done = True
        if self._ack is not None:
            self._ack(1)
        return {"type": "http.request", "body": chunk.data, "more_body": chunk.more}

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.status = message["status"]
            self._start_headers = message.get("headers", [])
            return
        if kind != "http.response.body" or self.finished:
            return
        body = message.get("body", b"")
        more = message.get("more_body", False)
        if not self.started:
            first, rest = (body, b"") if len(body) <= CHUNK else (body[:CHUNK], body[CHUNK:])
            self.started = True
            last = not more and not rest
            self._send(encode(ResponseHead(self.id, self.status, self._start_headers, first, not last)))
            self.finished = last
            body = rest
            if not body:
                return
        for i in range(0, max(len(body), 1), CHUNK):
            part = body[i : i + CHUNK]
            last = not more and i + CHUNK >= len(body)
            while self._credit <= 0:
                if self._disconnected:
                    raise asyncio.CancelledError
                self._credit_waiter = asyncio.get_running_loop().create_future()
                await self._credit_waiter
                self._credit_waiter = None
            self._credit -= 1
            self._send(encode(ResponseBody(self.id, bytes(part), not last)))
        self.finished = not more


def error_response(exc: BaseException, method: str, url: str, dev: bool) -> tuple[int, bytes]:
    """Status and JSON body of the error shape for an exception raised by plugin code."""
    import json

    if isinstance(exc, HTTPException):
        name = _NAME_BY_STATUS.get(exc.status_code, "HttpError")
        status, message = exc.status_code, exc.detail or name
    else:
        name = errors.error_name(exc)
        status = errors.status_for(name) if isinstance(exc, errors.KernelError) else 500
        message = str(exc) or name
    stack = errors.format_stack(exc) if dev else None
    body = errors.error_body(name, message, method, url, status=status, stack=stack)
    return status, json.dumps(body).encode()


_NAME_BY_STATUS = {v: k for k, v in errors.STATUS_BY_NAME.items()}
_NAME_BY_STATUS[405] = "MethodNotAllowedError"

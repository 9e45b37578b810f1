"""One request inside a worker: ASGI receive/send over protocol messages, with flow control."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from kernel import errors, framework_errors
from kernel.flow import Acker, CreditWindow
from kernel.protocol import Credit, Error, RequestHead, ResponseBody, ResponseHead, encode

CHUNK = 256 * 1024  # largest body chunk put on the wire; smaller writes are coalesced up to it

#: sends one encoded message, and a body message's bytes, to the gateway (``Channel.send``)
Send = Callable[[bytes, "bytes | memoryview | None"], None]

_DISCONNECT = {"type": "http.disconnect"}


class Stream:
    """State of one request: queued request body, response credit, cancellation."""

    __slots__ = (
        "_acker",
        "_body",
        "_body_waiter",
        "_credit",
        "_disconnected",
        "_flush_scheduled",
        "_head_taken",
        "_pending",
        "_pending_size",
        "_send",
        "_start_headers",
        "finished",
        "head",
        "id",
        "started",
        "status",
        "task",
    )

    def __init__(self, head: RequestHead, send: Send) -> None:
        self.id = head.stream
        self.head = head
        self._send = send
        self.task: asyncio.Task[None] | None = None
        self._body: deque[tuple[bytes, bool]] = deque()
        self._body_waiter: asyncio.Future[None] | None = None
        self._disconnected = False
        self.started = False
        self.finished = False
        self._credit = CreditWindow()  # response chunks the gateway will take
        self.status = 0
        self._head_taken = False
        self._start_headers: Any = []
        self._pending: list[bytes] = []  # small response writes not yet on the wire
        self._pending_size = 0
        self._flush_scheduled = False
        self._acker = Acker()  # request body chunks read by the handler

    # -- from the connection ------------------------------------------------
    def feed(self, data: bytes, more: bool) -> None:
        self._body.append((data, more))
        self._wake_body()

    def grant(self, chunks: int) -> None:
        if not self._credit.grant(chunks) and self._pending and not self._flush_scheduled:
            self._flush_now()

    def disconnect(self) -> None:
        self._disconnected = True
        self._wake_body()
        self._credit.wake()
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
            "raw_path": h.raw_path or h.path.encode(),
            "query_string": h.query,
            "root_path": root_path,
            "headers": h.headers,
            "client": h.client,
            "server": None,
            "state": {},
            "app": app,
            principal_key: h.principal,
        }

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
        data, more = self._body.popleft()
        credit = self._acker.consumed(more)
        if credit:
            self._send(encode(Credit(self.id, credit)), None)
        return {"type": "http.request", "body": data, "more_body": more}

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
            self.started = True
            if len(body) <= CHUNK:
                self.finished = not more
                self._send(encode(ResponseHead(self.id, self.status, self._start_headers, body, more)), None)
                return
            self._send(encode(ResponseHead(self.id, self.status, self._start_headers, b"", True)), None)
        if more and len(body) < CHUNK:
            # coalesce small writes; they go out when CHUNK fills, the handler pauses, or it ends
            self._pending.append(body)
            self._pending_size += len(body)
            if self._pending_size < CHUNK:
                if not self._flush_scheduled:
                    self._flush_scheduled = True
                    asyncio.get_running_loop().call_soon(self._flush_soon)
                return
            body = self._take_pending()
        elif self._pending:
            body = self._take_pending() + body
        view = memoryview(body)
        for i in range(0, max(len(body), 1), CHUNK):
            last = not more and i + CHUNK >= len(body)
            await self._credit.acquire(self._stopped)
            self._put(view[i : i + CHUNK], not last)
        self.finished = not more

    async def finish(self) -> None:
        """The handler returned: end the answer it left open."""
        if not self.started:
            raise RuntimeError("the handler returned without sending a response")
        if not self.finished:
            await self.send({"type": "http.response.body", "body": b"", "more_body": False})

    def fail(self, exc: BaseException, status: int, body: bytes) -> None:
        """Answer with the error (``status``, JSON ``body``), or break off a response already started."""
        if not self.started:
            self.started = self.finished = True
            headers = [
                (b"content-type", b"application/json"),
                *errors.retry_after_header(exc),
                *framework_errors.own_headers(exc),
            ]
            self._send(encode(ResponseHead(self.id, status, headers, body, False)), None)
        elif not self.finished:
            self.finished = True
            self._send(encode(Error(self.id, type(exc).__name__, str(exc))), None)

    def _put(self, data: bytes | memoryview, more: bool) -> None:
        """Send a body chunk; the caller has spent its credit."""
        self._send(encode(ResponseBody(self.id, more)), data)

    def _stopped(self) -> BaseException | None:
        return asyncio.CancelledError() if self._disconnected else None

    def _flush_soon(self) -> None:
        self._flush_scheduled = False
        self._flush_now()

    def _flush_now(self) -> None:
        """Send coalesced writes if credit allows (else the next grant or write sends them)."""
        if self._pending and not self.finished and not self._disconnected and self._credit.try_acquire():
            self._put(self._take_pending(), True)

    def _take_pending(self) -> bytes:
        data = b"".join(self._pending)
        self._pending.clear()
        self._pending_size = 0
        return data


def error_response(exc: BaseException, method: str, url: str, dev: bool) -> tuple[int, bytes]:
    """Status and JSON body of the error shape for an exception raised by plugin code."""
    import json

    name, status, message = framework_errors.describe(exc)
    stack = errors.format_stack(exc) if dev else None
    body = errors.error_body(name, message, method, url, status=status, stack=stack)
    return status, json.dumps(body).encode()

"""One request on its way through a worker: the gateway's side of a stream.

The worker link (``kernel.gateway.links``) delivers what the worker
sends (head, body chunks, credit, failure); the stream turns it into the ASGI
answer with flow control both ways: request body chunks go out as the worker
grants credit, response chunks are acknowledged as the client takes them.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from starlette.types import Receive, Send

from kernel.errors import GatewayTimeoutError, PayloadTooLargeError, ServiceUnavailableError
from kernel.flow import Acker, CreditWindow
from kernel.protocol import Credit, End, Error, Message, RequestBody, ResponseBody, ResponseHead, encode


class WorkerGone(Exception):
    """The worker serving a stream died, was removed, or cannot be reached."""


class ClientGone(Exception):
    """The client disconnected while its request was in flight."""


class AnswerBrokenOff(Exception):
    """An answer already started cannot be finished (its worker died or fell silent): the connection is cut.

    Raised to the server, which cuts the connection (the only way to tell the client); its log line
    is one warning, not a traceback (``kernel.gateway.servers.BrokenOffFilter``).
    """


class WorkerLink:
    """One worker as this gateway sees it."""

    __slots__ = ("id", "ident", "inflight", "plugin_id")

    def __init__(self, wid: str, plugin_id: str, route: str = "") -> None:
        self.id = wid
        self.ident = (route or wid).encode()  # the worker's routing id: its id and a secret part
        self.plugin_id = plugin_id
        self.inflight = 0


#: puts a message (and a body message's bytes) on the wire to a worker; raises ``WorkerGone``
SendToWorker = Callable[[WorkerLink, bytes, "bytes | None"], None]


class WorkerBound:
    """What a request and a WebSocket bound to one worker share: the worker's first answer, credit, failure."""

    __slots__ = ("_credit", "_send", "_waiter", "failure", "first", "id", "worker")

    def __init__(self, sid: int, worker: WorkerLink, send: SendToWorker) -> None:
        self.id = sid
        self.worker = worker
        self._send = send
        #: the worker's first answer (a ``ResponseHead``; for a WebSocket, or its ``WsAccept``/``WsClose``)
        self.first: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._waiter: asyncio.Future[None] | None = None  # the client side waiting for news
        self._credit = CreditWindow()  # body chunks (or messages) the worker will take
        self.failure: BaseException | None = None

    def fail(self, exc: BaseException) -> None:
        """Stop: whatever waits on it (the first answer, news, credit) raises ``exc``."""
        self.failure = exc
        if not self.first.done():
            self.first.set_exception(exc)
        self._wake()
        self._credit.wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def _first_answer(self, timeout: float) -> Message:
        """The worker's first answer, within ``timeout`` (a timer, not ``wait_for``: no extra task)."""
        timer = asyncio.get_running_loop().call_later(timeout, self._expire, timeout)
        try:
            return await self.first
        except WorkerGone as exc:
            raise ServiceUnavailableError(str(exc)) from None
        finally:
            timer.cancel()

    def _expire(self, timeout: float) -> None:
        self.fail(GatewayTimeoutError(f"Plugin '{self.worker.plugin_id}' did not answer within {timeout:g}s"))

    def _tell_worker(self, msg: Message) -> None:
        """Send a message without bytes to the worker, if it is still there."""
        try:
            self._send(self.worker, encode(msg), None)
        except WorkerGone:
            pass

    def abandon(self) -> None:
        """Tell the worker nobody waits for the answer any more (it cancels the handler)."""
        self._tell_worker(End(self.id))


class GatewayStream(WorkerBound):
    """Response side of one request: head, queued body chunks, upload credit."""

    __slots__ = ("_acker", "_chunks", "_complete")

    def __init__(self, sid: int, worker: WorkerLink, send: SendToWorker) -> None:
        super().__init__(sid, worker, send)
        self._chunks: deque[tuple[bytes, bool]] = deque()  # (data, more)
        self._acker = Acker()  # response chunks written to the client
        #: the last chunk is here: the answer no longer needs its worker (it may exit, as a draining one does)
        self._complete = False

    # -- from the worker ----------------------------------------------------------
    def deliver(self, msg: Message, data: bytes) -> None:
        """A message of this stream from its worker (``data``: a body message's bytes)."""
        kind = type(msg)
        if kind is ResponseBody:
            self._chunks.append((data, msg.more))  # type: ignore[union-attr]
            self._complete = not msg.more  # type: ignore[union-attr]
            self._wake()
        elif kind is ResponseHead:
            if not self.first.done():
                self.first.set_result(msg)
        elif kind is Credit:
            self._credit.grant(msg.chunks)  # type: ignore[union-attr]
        elif kind is Error:
            self.fail(WorkerGone(f"{msg.name}: {msg.message}"))  # type: ignore[union-attr]

    # -- to the client --------------------------------------------------------------
    async def answer(self, send: Send, receive: Receive, timeout: float, uploading: bool) -> None:
        """Wait for the head (at most ``timeout``), then relay the answer to the client.

        ``timeout`` also bounds the silence between two chunks of a streamed answer. Unless an
        upload already listens to the client, a streamed answer stops when the client goes away.
        """
        loop = asyncio.get_running_loop()
        head: ResponseHead = await self._first_answer(timeout)  # type: ignore[assignment]
        await send({"type": "http.response.start", "status": head.status, "headers": head.headers})
        await send({"type": "http.response.body", "body": head.body, "more_body": head.more_body})
        if not head.more_body:
            return
        watcher = None if uploading else loop.create_task(self.watch_disconnect(receive))
        try:
            more = True
            while more:
                try:
                    failure = self.failure  # client gone, worker gone, idle timeout
                    if failure is not None and not (self._chunks and isinstance(failure, WorkerGone)):
                        raise failure  # what the worker sent before it went still reaches the client
                    data, more = self._chunks.popleft() if self._chunks else await self._next_chunk(timeout)
                except (WorkerGone, GatewayTimeoutError) as exc:
                    raise self._broken_off(exc) from None
                await send({"type": "http.response.body", "body": data, "more_body": more})
                credit = self._acker.consumed(more)
                if credit and not self._complete:  # nothing more to ask of the worker once the last chunk is here
                    try:
                        self._send(self.worker, encode(Credit(self.id, credit)), None)
                    except WorkerGone as exc:  # it died between two chunks, before the table said so
                        raise self._broken_off(exc) from None
        finally:
            if watcher is not None:
                watcher.cancel()

    def _broken_off(self, exc: Exception) -> AnswerBrokenOff:
        return AnswerBrokenOff(f"the answer of plugin '{self.worker.plugin_id}' was broken off: {exc}")

    async def _next_chunk(self, idle_timeout: float) -> tuple[bytes, bool]:
        """The next body chunk; a worker silent for ``idle_timeout`` seconds fails the stream."""
        loop = asyncio.get_running_loop()
        while not self._chunks:
            if self.failure is not None:
                raise self.failure
            self._waiter = loop.create_future()
            timer = loop.call_later(idle_timeout, self._idle, idle_timeout)
            try:
                await self._waiter
            finally:
                timer.cancel()
                self._waiter = None
        return self._chunks.popleft()

    def _idle(self, timeout: float) -> None:
        self.fail(GatewayTimeoutError(f"Plugin '{self.worker.plugin_id}' sent nothing for {timeout:g}s"))

    # -- from the client ------------------------------------------------------------
    async def upload(self, receive: Receive, seen: int, max_body: int) -> None:
        """Forward request body chunks as the worker grants credit; any failure fails the stream."""
        try:
            more = True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    self.fail(ClientGone("the client closed the connection during the upload"))
                    return
                data = message.get("body", b"")
                more = message.get("more_body", False)
                seen += len(data)
                if seen > max_body:
                    self.abandon()
                    self.fail(PayloadTooLargeError(f"Request body is over the limit of {max_body} bytes"))
                    return  # the waiting request answers 413
                await self._credit.acquire(lambda: self.failure)
                self._send(self.worker, encode(RequestBody(self.id, more)), data)
            await self.watch_disconnect(receive)
        except Exception as exc:  # worker gone, stream already failed: the request side reports it
            if self.failure is None:
                self.fail(exc)

    async def watch_disconnect(self, receive: Receive) -> None:
        """Once the request body is in, the next ASGI message can only be the client leaving."""
        while (await receive())["type"] != "http.disconnect":
            pass
        self.fail(ClientGone("the client closed the connection"))

"""The gateway's side of ZeroMQ: the workers it may use, and the streams open on them."""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from collections.abc import Callable
from typing import Any

import zmq

from kernel.errors import GatewayTimeoutError
from kernel.flow import Acker, CreditWindow
from kernel.protocol import (
    PROTOCOL_VERSION,
    AuthPolicy,
    Credit,
    Error,
    Heartbeat,
    Hello,
    PluginState,
    ProtocolError,
    ResponseBody,
    ResponseHead,
    Shutdown,
    WorkerTable,
    check_hello,
    decode,
    encode,
)
from kernel.zmqio import ZERO_COPY, LoopSocket

log = logging.getLogger("kernel.gateway")


class WorkerGone(Exception):
    """The worker serving a stream died or was removed."""


class GatewayStream:
    """Response side of one request: head future, queued body chunks, upload credit."""

    __slots__ = ("acker", "chunks", "credit", "failure", "head", "id", "waiter", "worker")

    def __init__(self, sid: int, worker: WorkerLink) -> None:
        self.id = sid
        self.worker = worker
        self.head: asyncio.Future[ResponseHead] = asyncio.get_running_loop().create_future()
        self.chunks: deque[tuple[bytes, bool]] = deque()  # (data, more)
        self.acker = Acker()  # response chunks written to the client
        self.waiter: asyncio.Future[None] | None = None
        self.credit = CreditWindow()  # request body chunks the worker will take
        self.failure: BaseException | None = None

    def _wake(self) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)
        self.credit.wake()

    def fail(self, exc: BaseException) -> None:
        self.failure = exc
        if not self.head.done():
            self.head.set_exception(exc)
        self._wake()

    async def next_chunk(self, idle_timeout: float) -> tuple[bytes, bool]:
        """The next body chunk; a worker silent for ``idle_timeout`` seconds fails the stream."""
        loop = asyncio.get_running_loop()
        while not self.chunks:
            if self.failure is not None:
                raise self.failure
            self.waiter = loop.create_future()
            timer = loop.call_later(idle_timeout, self._idle, idle_timeout)
            try:
                await self.waiter
            finally:
                timer.cancel()
                self.waiter = None
        return self.chunks.popleft()

    def _idle(self, timeout: float) -> None:
        self.fail(GatewayTimeoutError(f"Plugin '{self.worker.plugin_id}' sent nothing for {timeout:g}s"))

    async def take_credit(self) -> None:
        await self.credit.acquire(lambda: self.failure)


class WorkerLink:
    """One worker as this gateway sees it."""

    __slots__ = ("id", "ident", "inflight", "plugin_id")

    def __init__(self, wid: str, plugin_id: str) -> None:
        self.id = wid
        self.ident = wid.encode()
        self.plugin_id = plugin_id
        self.inflight = 0


class PluginRoute:
    """A plugin as the gateway routes to it."""

    __slots__ = ("id", "policies", "reason", "state", "workers")

    def __init__(self, state: PluginState, links: dict[str, WorkerLink]) -> None:
        self.id = state.id
        self.state = state.state
        self.reason = state.reason
        self.policies: list[AuthPolicy] = sorted(state.policies, key=lambda p: -len(p.path))
        self.workers = [links[w] for w in state.workers if w in links]

    def pick(self) -> WorkerLink | None:
        """The least-loaded ready worker."""
        best = None
        for w in self.workers:
            if best is None or w.inflight < best.inflight:
                best = w
        return best


class WorkerPool:
    """Owns the ROUTER socket workers connect to and the control link to the supervisor."""

    def __init__(self, index: int, endpoint: str, control: str, on_shutdown: Callable[[float], None]):
        self.index = index
        self.endpoint = endpoint
        self.control_endpoint = control
        self.plugins: dict[str, PluginRoute] = {}
        self.states: dict[str, PluginState] = {}
        self.accepting = False
        self.table_seen = False
        self.generation = -1
        self.streams: dict[int, GatewayStream] = {}
        self._links: dict[str, WorkerLink] = {}
        self._next = 0
        self._on_shutdown = on_shutdown
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        self.router: LoopSocket | None = None
        self.control: LoopSocket | None = None

    def start(self) -> None:
        sock = self._ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
        sock.bind(self.endpoint)
        self.router = LoopSocket(sock, self._on_worker_message)
        ctl = self._ctx.socket(zmq.DEALER)
        ctl.setsockopt(zmq.ROUTING_ID, f"gateway-{self.index}".encode())
        ctl.setsockopt(zmq.LINGER, 0)
        ctl.connect(self.control_endpoint)
        self.control = LoopSocket(ctl, self._on_control)
        self.control.send([encode(Hello(PROTOCOL_VERSION, "gateway", "", f"gateway-{self.index}", os.getpid()))])

    def close(self) -> None:
        for s in (self.router, self.control):
            if s is not None:
                s.close()

    # -- streams ---------------------------------------------------------------
    def open(self, worker: WorkerLink, head_frame: Callable[[int], bytes]) -> GatewayStream:
        """Open a stream on ``worker`` and send its head (built with the new stream id)."""
        self._next += 1
        sid = self._next
        stream = GatewayStream(sid, worker)
        self.streams[sid] = stream
        worker.inflight += 1
        self.send(worker, head_frame(sid))
        return stream

    def close_stream(self, stream: GatewayStream) -> None:
        if self.streams.pop(stream.id, None) is not None:
            stream.worker.inflight -= 1

    def send(self, worker: WorkerLink, frame: bytes, data: bytes | None = None) -> None:
        """Send a message (and, for body messages, its bytes) to ``worker``."""
        assert self.router is not None
        try:
            if data is None:
                self.router.send([worker.ident, frame])
            else:
                self.router.send([worker.ident, frame, data], copy=len(data) < ZERO_COPY)
        except zmq.ZMQError as exc:  # EHOSTUNREACH: the worker is gone or not yet connected
            raise WorkerGone(f"worker {worker.id} of plugin '{worker.plugin_id}' is unreachable") from exc

    # -- incoming ----------------------------------------------------------------
    def _on_worker_message(self, frames: list[bytes]) -> None:
        ident, payload = frames[0], frames[1]
        try:
            msg = decode(payload)
        except ProtocolError as exc:
            log.error("gateway %d: bad frame from worker %r: %s", self.index, ident, exc)
            return
        kind = type(msg)
        if kind is ResponseHead or kind is ResponseBody:
            stream = self.streams.get(msg.stream)  # type: ignore[union-attr]
            if stream is None:
                return
            if kind is ResponseHead:
                if not stream.head.done():
                    stream.head.set_result(msg)  # type: ignore[arg-type]
            else:
                stream.chunks.append((frames[2], msg.more))  # type: ignore[union-attr]
                w = stream.waiter
                if w is not None and not w.done():
                    w.set_result(None)
        elif kind is Credit:
            stream = self.streams.get(msg.stream)  # type: ignore[union-attr]
            if stream is not None:
                stream.credit.grant(msg.chunks)  # type: ignore[union-attr]
        elif kind is Error:
            stream = self.streams.get(msg.stream)  # type: ignore[union-attr]
            if stream is not None:
                stream.fail(WorkerGone(f"{msg.name}: {msg.message}"))  # type: ignore[union-attr]
        elif kind is Hello:
            self._greet(ident, msg)  # type: ignore[arg-type]

    def _greet(self, ident: bytes, msg: Hello) -> None:
        assert self.router is not None
        try:
            check_hello(msg)
        except ProtocolError as exc:
            log.error("gateway %d: %s", self.index, exc)
            self.router.send([ident, encode(Error(0, "ProtocolError", str(exc)))])
            return
        self.router.send([ident, encode(Hello(PROTOCOL_VERSION, "gateway", "", f"gateway-{self.index}", os.getpid()))])

    def _on_control(self, frames: list[bytes]) -> None:
        try:
            msg = decode(frames[-1])
        except ProtocolError as exc:
            log.error("gateway %d: bad frame from supervisor: %s", self.index, exc)
            return
        if type(msg) is WorkerTable:
            self._apply(msg)
        elif type(msg) is Heartbeat:
            assert self.control is not None
            self.control.send([encode(Heartbeat(msg.sent_at))])
        elif type(msg) is Shutdown:
            self.accepting = False
            self._on_shutdown(msg.grace)
        elif type(msg) is Error:
            log.error("gateway %d: supervisor says: %s", self.index, msg.message)

    def _apply(self, table: WorkerTable) -> None:
        if self.table_seen and table.generation == self.generation:
            return  # a resend of the table in force
        self.generation = table.generation
        links: dict[str, WorkerLink] = {}
        for p in table.plugins:
            for wid in p.workers:
                links[wid] = self._links.get(wid) or WorkerLink(wid, p.id)
        gone = set(self._links) - set(links)
        self._links = links
        self.plugins = {p.id: PluginRoute(p, links) for p in table.plugins}
        self.states = {p.id: p for p in table.plugins}
        self.accepting = table.accepting
        self.table_seen = True
        if gone:
            for stream in list(self.streams.values()):
                if stream.worker.id in gone:
                    stream.fail(
                        WorkerGone(
                            f"worker {stream.worker.id} of plugin '{stream.worker.plugin_id}' "
                            "stopped while handling the request"
                        )
                    )

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        if not self.table_seen:
            return False, {"status": "starting"}
        if not self.accepting:
            return False, {"status": "stopping"}
        not_ready = {p.id: (p.reason or p.state) for p in self.plugins.values() if p.state == "failed" or not p.workers}
        if not_ready:
            return False, {"status": "unavailable", "plugins": not_ready}
        return True, {"status": "ok"}

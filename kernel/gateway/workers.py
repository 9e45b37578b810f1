"""The gateway's link to the workers: the socket they connect to, the table of who serves what.

Workers connect to this gateway's ROUTER socket and greet it; the supervisor's
``WorkerTable`` (on the control link) says which ready worker serves which
plugin. Messages from workers are handed to the stream they belong to.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import zmq

from kernel.protocol import (
    AuthPolicy,
    ConfigUpdate,
    Credit,
    Error,
    Heartbeat,
    Hello,
    Message,
    PluginState,
    ResponseBody,
    ResponseHead,
    Shutdown,
    Stats,
    TableApplied,
    WorkerTable,
    WsAccept,
    WsClose,
    WsMessage,
)
from kernel.transport.connection import Channel, hello, refusal
from kernel.transport.sockets import dealer, router

from .stream import GatewayStream, WorkerGone, WorkerLink
from .websockets import GatewaySocket

log = logging.getLogger("kernel.gateway")
#: messages a worker sends about one stream
_STREAM_MESSAGES = frozenset({ResponseHead, ResponseBody, Credit, Error, WsAccept, WsMessage, WsClose})


class PluginRoute:
    """A plugin as the gateway routes to it."""

    __slots__ = ("id", "policies", "reason", "state", "workers")

    def __init__(self, state: PluginState, links: dict[str, WorkerLink]) -> None:
        self.id = state.id
        self.state = state.state
        self.reason = state.reason
        self.policies: list[AuthPolicy] = sorted(state.policies, key=lambda p: -len(p.path))
        self.workers = [links[w] for w in state.workers if w in links]

    def drop(self, worker: WorkerLink) -> None:
        """Stop picking ``worker`` (found gone) until the next table."""
        if worker in self.workers:
            self.workers.remove(worker)

    def pick(self) -> WorkerLink | None:
        """The least-loaded ready worker."""
        best = None
        for w in self.workers:
            if best is None or w.inflight < best.inflight:
                best = w
        return best


class WorkerPool:
    """Owns the ROUTER socket workers connect to and the control link to the supervisor.

    ``on_shutdown(grace)`` runs when the supervisor says stop; ``on_config(update)`` when it
    pushes a changed config. ``tolerated(plugin_id)`` says whether the plugin may fail without
    keeping the instance out of traffic (its ``onPluginBootFailure`` is ``continue``).
    """

    def __init__(
        self,
        index: int,
        endpoint: str,
        control: str,
        on_shutdown: Callable[[float], None],
        on_config: Callable[[ConfigUpdate], None] = lambda update: None,
        tolerated: Callable[[str], bool] = lambda plugin_id: False,
        secret: str = "",
    ) -> None:
        self.name = f"gateway-{index}"
        self.endpoint = endpoint
        self.control_endpoint = control
        self.plugins: dict[str, PluginRoute] = {}
        self.states: dict[str, PluginState] = {}
        #: the supervisor's latest figures of every process (``None`` until its first tick)
        self.stats: Stats | None = None
        self.accepting = False
        self.table_seen = False
        self.generation = -1
        self.streams: dict[int, GatewayStream | GatewaySocket] = {}
        self._links: dict[str, WorkerLink] = {}
        self._next = 0
        self._on_shutdown = on_shutdown
        self._on_config = on_config
        self._tolerated = tolerated
        self._secret = secret
        self._table_waiters: list[asyncio.Future[None]] = []
        #: per plugin: requests waiting for a worker with room (``maxInFlight``), oldest first
        self._queues: dict[str, list[asyncio.Future[None]]] = {}
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        self.workers: Channel | None = None
        self.control: Channel | None = None

    def start(self) -> None:
        sock = router(self._ctx, self.endpoint, unbounded=True)
        self.workers = Channel(sock, self._on_worker_message, routed=True, name=self.name)
        ctl = dealer(self._ctx, self.control_endpoint, self.name)
        self.control = Channel(ctl, self._on_control, routed=False, name=f"{self.name} control")
        self.control.send(hello("gateway", worker_id=self.name, secret=self._secret))

    def close(self) -> None:
        for channel in (self.workers, self.control):
            if channel is not None:
                channel.close()

    async def table_change(self, timeout: float) -> None:
        """Wait for the next worker table (or ``timeout`` seconds)."""
        await _wait_in(self._table_waiters, timeout)

    def queue(self, plugin_id: str) -> list[asyncio.Future[None]]:
        return self._queues.setdefault(plugin_id, [])

    async def room(self, plugin_id: str, timeout: float) -> None:
        """Wait in ``plugin_id``'s queue until one of its streams ends (or a new table, or ``timeout``)."""
        await _wait_in(self.queue(plugin_id), timeout)

    # -- streams ---------------------------------------------------------------
    def open(self, worker: WorkerLink, head_frame: Callable[[int], bytes]) -> GatewayStream:
        """Open a stream on ``worker`` and send its head (built with the new stream id)."""
        self._next += 1
        stream = GatewayStream(self._next, worker, self.send)
        self._register(stream, head_frame)
        return stream

    def open_socket(self, worker: WorkerLink, head_frame: Callable[[int], bytes]) -> GatewaySocket:
        """Open a WebSocket on ``worker`` and send its handshake."""
        self._next += 1
        socket = GatewaySocket(self._next, worker, self.send)
        self._register(socket, head_frame)
        return socket

    def _register(self, stream: GatewayStream | GatewaySocket, head_frame: Callable[[int], bytes]) -> None:
        self.streams[stream.id] = stream
        stream.worker.inflight += 1
        try:
            self.send(stream.worker, head_frame(stream.id), None)
        except WorkerGone:
            self.close_stream(stream)
            raise

    def close_stream(self, stream: GatewayStream | GatewaySocket) -> None:
        if self.streams.pop(stream.id, None) is not None:
            stream.worker.inflight -= 1
            queue = self._queues.get(stream.worker.plugin_id)
            if queue:
                _settle(queue.pop(0))  # the oldest waiter takes the room

    def send(self, worker: WorkerLink, frame: bytes, data: bytes | None) -> None:
        """Send a message (and, for body messages, its bytes) to ``worker``."""
        assert self.workers is not None
        try:
            self.workers.send(frame, data, to=worker.ident)
        except zmq.ZMQError as exc:  # EHOSTUNREACH: the worker is gone or not yet connected
            raise WorkerGone(f"worker {worker.id} of plugin '{worker.plugin_id}' is unreachable") from exc

    # -- incoming ----------------------------------------------------------------
    def _on_worker_message(self, peer: bytes, msg: Message, frames: list[bytes]) -> None:
        kind = type(msg)
        if kind in _STREAM_MESSAGES:
            stream = self.streams.get(msg.stream)  # type: ignore[union-attr]
            if stream is None or stream.worker.ident != peer:
                return  # no such stream, or not the worker it was dispatched to: nobody answers for another
            stream.deliver(msg, frames[-1])
        elif kind is Hello:
            assert self.workers is not None
            refused = refusal(msg, self.name)
            self.workers.offer(refused or hello("gateway", worker_id=self.name), to=peer)

    def _on_control(self, peer: bytes, msg: Message, frames: list[bytes]) -> None:
        assert self.control is not None
        if type(msg) is WorkerTable:
            self._apply(msg)
            self.control.offer(TableApplied(msg.generation))  # resends too: an answer may have been lost
        elif type(msg) is Heartbeat:
            self.control.offer(Heartbeat(time.time(), echo=msg.sent_at))
        elif type(msg) is Stats:
            self.stats = msg
        elif type(msg) is ConfigUpdate:
            self._on_config(msg)
        elif type(msg) is Shutdown:
            self.accepting = False
            self._on_shutdown(msg.grace)
        elif type(msg) is Error:
            log.error("%s: supervisor says: %s", self.name, msg.message)

    def _apply(self, table: WorkerTable) -> None:
        if self.table_seen and table.generation == self.generation:
            return  # a resend of the table in force
        self.generation = table.generation
        links: dict[str, WorkerLink] = {}
        for p in table.plugins:
            for wid in (*p.workers, *p.draining):  # a draining worker takes no new stream but ends its own
                link = self._links.get(wid)
                route = p.routes.get(wid, "")
                links[wid] = (
                    link if link is not None and link.ident == (route or wid).encode() else WorkerLink(wid, p.id, route)
                )
        gone = set(self._links) - set(links)
        self._links = links
        self.plugins = {p.id: PluginRoute(p, links) for p in table.plugins}
        self.states = {p.id: p for p in table.plugins}
        self.accepting = table.accepting
        self.table_seen = True
        waiters, self._table_waiters = self._table_waiters, []
        for queue in self._queues.values():  # new workers may have room
            waiters += queue
            queue.clear()
        for w in waiters:
            _settle(w)
        if gone:
            for stream in list(self.streams.values()):
                if stream.worker.id in gone:
                    stream.fail(
                        WorkerGone(
                            f"worker {stream.worker.id} of plugin '{stream.worker.plugin_id}' "
                            "stopped while handling the request"
                        )
                    )

    def in_flight(self) -> dict[str, int]:
        """Streams (requests and WebSockets) open now, per plugin."""
        counts: dict[str, int] = {}
        for stream in self.streams.values():
            plugin_id = stream.worker.plugin_id
            counts[plugin_id] = counts.get(plugin_id, 0) + 1
        return counts

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready when every plugin has a ready worker, except failed plugins allowed to fail (listed as ``failed``).

        A plugin failed under ``onPluginBootFailure: abort`` (flapping, say) keeps the instance unready.
        """
        if not self.table_seen:
            return False, {"status": "starting"}
        if not self.accepting:
            return False, {"status": "stopping"}
        failed: dict[str, str] = {}
        not_ready: dict[str, str] = {}
        for p in self.plugins.values():
            if p.state == "failed" and self._tolerated(p.id):
                failed[p.id] = p.reason or p.state
            elif p.state == "failed" or not p.workers:
                not_ready[p.id] = p.reason or p.state
        body: dict[str, Any] = {"status": "unavailable", "plugins": not_ready} if not_ready else {"status": "ok"}
        if failed:
            body["failed"] = failed
        return not not_ready, body


async def _wait_in(waiters: list[asyncio.Future[None]], timeout: float) -> None:
    """Join ``waiters`` until settled by whoever wakes them, or ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()
    waiters.append(waiter)
    timer = loop.call_later(timeout, _settle, waiter)
    try:
        await waiter
    finally:
        timer.cancel()
        if waiter in waiters:
            waiters.remove(waiter)


def _settle(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)

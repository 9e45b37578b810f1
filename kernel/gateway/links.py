"""The streams open on workers: the gateway's half of the worker link, between the table and a transport.

``WorkerLinks`` opens a stream (a request, ``kernel.gateway.relay``) or a WebSocket
(``kernel.gateway.websockets``) on a worker the routing table (``kernel.gateway.table``) picked, sends
its head through the transport, hands each message the transport delivers to the stream it belongs to
(only from the worker it was sent to), and fails the streams of workers a new table no longer has.

The transport moves frames: ZeroMQ between processes (``kernel.gateway.zmq_transport``), or the
event loop in the test backend (``kernel.gateway.memory_transport``). Everything here is the same
in both.

A gateway that starts while workers run (restarted, or replacing another) waits until it can reach
each of them (``reachable``): their sockets join the new gateway's a moment after it binds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from kernel.gateway.relay import GatewayStream, WorkerGone, WorkerLink
from kernel.gateway.table import RoutingTable
from kernel.gateway.websockets import GatewaySocket
from kernel.protocol import (
    Credit,
    Error,
    Message,
    ResponseBody,
    ResponseHead,
    WorkerTable,
    WsAccept,
    WsClose,
    WsMessage,
)

#: messages a worker sends about one stream
_STREAM_MESSAGES = frozenset({ResponseHead, ResponseBody, Credit, Error, WsAccept, WsMessage, WsClose})
#: seconds between two tries to reach the workers (``reachable``)
REACH_POLL = 0.02
#: what a transport calls with each message from a worker: its routing id, the message, the raw frames
Deliver = Callable[[bytes, Message, list[bytes]], None]


class WorkerTransport(Protocol):
    """Moves frames between this gateway and the workers."""

    def start(self, deliver: Deliver) -> None:
        """Open; from now on call ``deliver`` with every stream message a worker sends."""

    def send(self, worker: WorkerLink, frame: bytes, data: bytes | None) -> None:
        """Send a message (and a body message's bytes) to ``worker``; raise ``WorkerGone`` when unreachable."""

    def close(self) -> None:
        """Close: nothing more is sent or delivered."""


class WorkerLinks:
    """The open streams of this gateway, on the workers of ``table``, through ``transport``."""

    def __init__(self, table: RoutingTable, transport: WorkerTransport) -> None:
        self.table = table
        self.transport = transport
        self.streams: dict[int, GatewayStream | GatewaySocket] = {}
        self._next = 0

    def start(self) -> None:
        self.transport.start(self.deliver)

    def close(self) -> None:
        self.transport.close()

    async def reachable(self, timeout: float, greeting: bytes) -> bool:
        """Wait (``timeout`` seconds at most) for the first worker table, then until ``greeting`` (this
        gateway's ``Hello``) reaches every worker it names; false when some could not be reached in time."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if not self.table.seen:
            await self.table.table_change(timeout)
        waiting = True
        while waiting and loop.time() < deadline:
            waiting = False
            for route in list(self.table.plugins.values()):
                for worker in route.workers:
                    try:
                        self.transport.send(worker, greeting, None)
                    except WorkerGone:
                        waiting = True
            if waiting:
                await asyncio.sleep(REACH_POLL)
        return not waiting

    def apply(self, table: WorkerTable) -> None:
        """Put a new worker table in force; the streams of workers it no longer has fail."""
        gone = self.table.apply(table)
        if not gone:
            return
        for stream in list(self.streams.values()):
            if stream.worker.id in gone:
                stream.fail(
                    WorkerGone(
                        f"worker {stream.worker.id} of plugin '{stream.worker.plugin_id}' "
                        "stopped while handling the request"
                    )
                )

    def open(self, worker: WorkerLink, head_frame: Callable[[int], bytes]) -> GatewayStream:
        """Open a stream on ``worker`` and send its head (built with the new stream id)."""
        self._next += 1
        stream = GatewayStream(self._next, worker, self.transport.send)
        self._register(stream, head_frame)
        return stream

    def open_socket(self, worker: WorkerLink, head_frame: Callable[[int], bytes]) -> GatewaySocket:
        """Open a WebSocket on ``worker`` and send its handshake."""
        self._next += 1
        socket = GatewaySocket(self._next, worker, self.transport.send)
        self._register(socket, head_frame)
        return socket

    def _register(self, stream: GatewayStream | GatewaySocket, head_frame: Callable[[int], bytes]) -> None:
        self.streams[stream.id] = stream
        stream.worker.inflight += 1
        try:
            self.transport.send(stream.worker, head_frame(stream.id), None)
        except WorkerGone:
            self.close_stream(stream)
            raise

    def close_stream(self, stream: GatewayStream | GatewaySocket) -> None:
        if self.streams.pop(stream.id, None) is not None:
            stream.worker.inflight -= 1
            self.table.released(stream.worker.plugin_id)

    def deliver(self, peer: bytes, msg: Message, frames: list[bytes]) -> None:
        """A message from the worker ``peer``: to its stream, if that stream was sent to that worker."""
        if type(msg) not in _STREAM_MESSAGES:
            return
        stream = self.streams.get(msg.stream)  # type: ignore[union-attr]
        if stream is None or stream.worker.ident != peer:
            return  # no such stream, or not the worker it was dispatched to: nobody answers for another
        stream.deliver(msg, frames[-1])

    def in_flight(self) -> dict[str, int]:
        """Streams (requests and WebSockets) open now, per plugin."""
        counts: dict[str, int] = {}
        for stream in self.streams.values():
            plugin_id = stream.worker.plugin_id
            counts[plugin_id] = counts.get(plugin_id, 0) + 1
        return counts

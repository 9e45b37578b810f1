"""The gateway's transport to worker processes: the ZeroMQ ROUTER socket they connect to.

Each worker connects with its routing id and greets the gateway (``Hello``); a greeting of another
protocol version is refused, naming both. Every other message goes to ``deliver``
(``kernel.gateway.links``), which hands it to the stream it belongs to.
"""

from __future__ import annotations

import zmq

from kernel.gateway.links import Deliver
from kernel.gateway.relay import WorkerGone, WorkerLink
from kernel.protocol import Hello, Message
from kernel.transport.connection import Channel, hello, hello_refusal
from kernel.transport.curve import CurveServer
from kernel.transport.sockets import router


class ZmqTransport:
    """The ROUTER socket at ``endpoint`` that the workers of every plugin connect to; with ``curve``,
    also at ``tcp_endpoint`` for remote workers (CurveZMQ, ``kernel.transport.curve``)."""

    def __init__(self, name: str, endpoint: str, *, curve: CurveServer | None = None, tcp_endpoint: str = "") -> None:
        self.name = name
        self.endpoint = endpoint
        self.curve = curve
        self.tcp_endpoint = tcp_endpoint
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        self._channel: Channel | None = None
        self._deliver: Deliver | None = None

    def start(self, deliver: Deliver) -> None:
        self._deliver = deliver
        sock = router(self._ctx, self.endpoint, unbounded=True)
        if self.curve is not None:
            self.curve.bind(sock, self.tcp_endpoint)
        self._channel = Channel(sock, self._on_message, routed=True, name=self.name)

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
        if self.curve is not None:
            self.curve.close()

    def send(self, worker: WorkerLink, frame: bytes, data: bytes | None) -> None:
        assert self._channel is not None
        try:
            self._channel.send(frame, data, to=worker.ident)
        except zmq.ZMQError as exc:  # EHOSTUNREACH: the worker is gone or not yet connected
            raise WorkerGone(f"worker {worker.id} of plugin '{worker.plugin_id}' is unreachable") from exc

    def _on_message(self, peer: bytes, msg: Message, frames: list[bytes]) -> None:
        if type(msg) is Hello:
            assert self._channel is not None
            refused = hello_refusal(msg, self.name)
            self._channel.offer(refused or hello("gateway", worker_id=self.name), to=peer)
        elif self._deliver is not None:
            self._deliver(peer, msg, frames)

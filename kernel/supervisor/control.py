"""The control channel: the supervisor's socket every gateway and worker joins.

A child greets it with ``Hello`` (a worker adds its auth policies, and sends
``Policies`` when they change later) and is then ready; heartbeats go both ways (a worker's carry its own readiness); the
supervisor sends worker tables to gateways, configs after a reload to
everyone, and ``Shutdown``.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Iterable

import zmq

from kernel.protocol import Error, Heartbeat, Hello, Message, Policies, TableApplied, encode
from kernel.supervisor.children import Child
from kernel.transport.connection import Channel, refusal
from kernel.transport.sockets import router

log = logging.getLogger("kernel")


class ControlChannel:
    """Receives from the ``children`` it knows; ``on_ready(child, hello)`` and ``on_change()`` report news."""

    def __init__(
        self,
        endpoint: str,
        children: dict[str, Child],
        on_ready: Callable[[Child, Hello], None],
        on_change: Callable[[], None],
        on_policies: Callable[[Child, Policies], None] = lambda child, msg: None,
    ) -> None:
        self.endpoint = endpoint
        self.children = children
        self.on_ready = on_ready
        self.on_change = on_change
        self.on_policies = on_policies
        self._channel: Channel | None = None

    def start(self) -> None:
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        self._channel = Channel(router(ctx, self.endpoint), self._on_message, routed=True, name="supervisor")

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def send(self, child: Child, msg: Message | bytes) -> bool:
        """Send ``msg`` (or an encoded message) to ``child``; false if it cannot take it now."""
        return self._channel is not None and self._channel.offer(msg, to=child.ident.encode())

    def broadcast(self, children: Iterable[Child], msg: Message | bytes) -> None:
        """Send one message to each of ``children`` that is ready (encoded once)."""
        frame = msg if isinstance(msg, bytes) else encode(msg)
        for child in children:
            if child.ready:
                self.send(child, frame)

    def _on_message(self, peer: bytes, msg: Message, frames: list[bytes]) -> None:
        child = self.children.get(peer.decode(errors="replace"))
        if child is None:
            return
        child.seen = time.monotonic()
        if type(msg) is Hello:
            refused = refusal(msg, child.ident)
            if refused is None and not hmac.compare_digest(msg.secret, child.secret):
                log.error(
                    "refused a process (pid %d) that claims to be %s %s: wrong secret", msg.pid, child.kind, child.ident
                )
                refused = Error(0, "ProtocolError", f"this is not {child.ident}: wrong secret")
            if refused is not None:
                self.send(child, refused)
                return
            child.ready = True
            self.on_ready(child, msg)
        elif type(msg) is TableApplied:
            child.applied = max(child.applied, msg.generation)
        elif type(msg) is Policies and child.ready and child.kind == "worker":
            self.on_policies(child, msg)
        elif type(msg) is Heartbeat:
            if msg.echo:
                child.rtt_ms = (time.time() - msg.echo) * 1000
            else:
                child.beat = msg
                child.served = msg.served
        if type(msg) is Heartbeat and msg.reason != child.unready:
            child.unready = msg.reason
            log.warning("worker %s is %s", child.ident, f"unready ({msg.reason})" if msg.reason else "ready again")
            self.on_change()

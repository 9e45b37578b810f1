"""The control channel: the supervisor's socket every gateway and worker joins.

A child greets it with ``Hello`` (a worker adds its auth policies, and sends
``Policies`` when they change later) and is then ready; heartbeats go both ways (a worker's carry its own readiness); the
supervisor sends worker tables to gateways, configs after a reload to
everyone, ``BeforeShutdown`` to workers (each answers it once its hooks ran) and ``Shutdown``. A gateway
forwards an operator's ``RolloutRequest``; the supervisor tells the gateways where rollouts stand (``Rollouts``)
and retires a gateway being replaced (``Retire``).

With ``curve`` (``backend.workers.remote``) the same socket also listens on ``join`` (``tcp://``,
CurveZMQ): a ``Hello`` there from a peer it does not know is a remote worker joining (``on_join``
answers it, ``kernel.supervisor.remote``); a message for a known child counts only when it comes with
the CURVE key that child joined with (none for a local child), and a remote worker's ``Shutdown``
asks to leave (a grace) or says it left (0) (``on_leave``).
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Iterable

import zmq

from kernel.protocol import (
    BeforeShutdown,
    Error,
    Heartbeat,
    Hello,
    Message,
    Policies,
    RolloutRequest,
    Shutdown,
    TableApplied,
    encode,
)
from kernel.supervisor.children import Child
from kernel.transport.connection import Channel, hello_refusal
from kernel.transport.curve import CurveServer, fingerprint
from kernel.transport.sockets import router

log = logging.getLogger("kernel")


class ControlChannel:
    """Receives from the ``children`` it knows; ``on_ready(child, hello)``, ``on_change()`` (a worker's
    readiness), ``on_policies(child, msg)``, ``on_applied(child)`` (a gateway's table, a worker's
    before-shutdown hooks done) and ``on_rollout(child, msg)`` (an operator's rollout, through a gateway)
    report news."""

    def __init__(
        self,
        endpoint: str,
        children: dict[str, Child],
        on_ready: Callable[[Child, Hello], None],
        on_change: Callable[[], object],
        on_policies: Callable[[Child, Policies], None] = lambda child, msg: None,
        *,
        on_applied: Callable[[Child], None] = lambda child: None,
        on_rollout: Callable[[Child, RolloutRequest], None] = lambda child, msg: None,
        curve: CurveServer | None = None,
        join: str = "",
        on_join: Callable[[bytes, Message, str], Message] | None = None,
        on_leave: Callable[[Child, float], None] = lambda child, grace: None,
    ) -> None:
        self.endpoint = endpoint
        self.children = children
        self.on_ready = on_ready
        self.on_change = on_change
        self.on_policies = on_policies
        self.on_applied = on_applied
        self.on_rollout = on_rollout
        self.curve = curve
        self.join = join
        self.on_join = on_join
        self.on_leave = on_leave
        self._channel: Channel | None = None

    def start(self) -> None:
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        sock = router(ctx, self.endpoint)
        if self.curve is not None:
            self.curve.bind(sock, self.join)
        keyed = self.curve is not None
        self._channel = Channel(sock, self._on_message, routed=True, name="supervisor", keyed=keyed)

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self.curve is not None:
            self.curve.close()

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
        channel = self._channel
        key = channel.peer_key if channel is not None else ""
        child = self.children.get(peer.decode(errors="replace"))
        if child is None:
            if key and type(msg) is Hello and not msg.worker_id and self.on_join is not None and channel is not None:
                channel.offer(self.on_join(peer, msg, key), to=peer)
            return
        if key != child.key:  # another key (or a plain-text peer) speaking under this child's id
            log.error(
                "dropped a message for %s %s from %s: it joined %s", child.kind, child.ident,
                f"CURVE key {fingerprint(key)}" if key else "a local peer",
                f"with key {fingerprint(child.key)}" if child.key else "locally",
            )  # fmt: skip
            return
        child.seen = time.monotonic()
        if type(msg) is Hello:
            refused = hello_refusal(msg, child.ident)
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
            if msg.generation > child.applied:
                child.applied = msg.generation
                self.on_applied(child)
        elif type(msg) is BeforeShutdown and child.kind == "worker":
            child.before_shutdown_done = True
            self.on_applied(child)
        elif type(msg) is Shutdown and child.key:
            self.on_leave(child, msg.grace)
        elif type(msg) is Policies and child.ready and child.kind == "worker":
            self.on_policies(child, msg)
        elif type(msg) is RolloutRequest and child.ready and child.kind == "gateway":
            self.on_rollout(child, msg)
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

"""The gateway's control link to the supervisor: worker tables in, acknowledgements and heartbeats out.

A DEALER socket connected to the supervisor's control endpoint, greeting it with the gateway's name
and the kernel's secret. The supervisor sends:

- ``WorkerTable``: put in force (``kernel.gateway.links``), acknowledged with ``TableApplied`` (every
  time: a resend means an acknowledgement was lost);
- ``Heartbeat``: echoed, for the round trip;
- ``Stats``: the supervisor's figures of every process, kept on the routing table for the metrics;
- ``ConfigUpdate``: a changed config, to ``on_config``;
- ``Rollouts``: where the operators' rollouts stand (``kernel.gateway.rollouts``); the gateway sends
  the supervisor an operator's ``RolloutRequest`` the same way back;
- ``Shutdown``: stop accepting, then ``on_shutdown(grace)``;
- ``Retire``: this gateway is being replaced: ``on_retire(grace)`` (its open connections finish, no
  new one is taken, and requests are served as usual meanwhile);
- ``Error``: logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import zmq

from kernel.gateway.links import WorkerLinks
from kernel.protocol import (
    ConfigUpdate,
    Error,
    Heartbeat,
    Message,
    Retire,
    Rollouts,
    Shutdown,
    Stats,
    TableApplied,
    WorkerTable,
)
from kernel.transport.connection import Channel, hello
from kernel.transport.sockets import dealer

log = logging.getLogger("kernel.gateway")


class ControlLink:
    """This gateway's link to the supervisor at ``endpoint``."""

    def __init__(
        self,
        name: str,
        endpoint: str,
        links: WorkerLinks,
        on_shutdown: Callable[[float], None],
        on_config: Callable[[ConfigUpdate], None] = lambda update: None,
        secret: str = "",
        on_retire: Callable[[float], None] = lambda grace: None,
    ) -> None:
        self.name = name
        self.endpoint = endpoint
        self._links = links
        self._on_shutdown = on_shutdown
        self._on_config = on_config
        self._on_retire = on_retire
        self._secret = secret
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        self._channel: Channel | None = None

    def start(self) -> None:
        sock = dealer(self._ctx, self.endpoint, self.name)
        self._channel = Channel(sock, self._on_message, routed=False, name=f"{self.name} control")
        self._channel.send(hello("gateway", worker_id=self.name, secret=self._secret))
        self._links.table.rollouts.connect(self._channel.offer)

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()

    def _on_message(self, peer: bytes, msg: Message, frames: list[bytes]) -> None:
        channel = self._channel
        assert channel is not None
        if type(msg) is WorkerTable:
            self._links.apply(msg)
            channel.offer(TableApplied(msg.generation))
        elif type(msg) is Heartbeat:
            channel.offer(Heartbeat(time.time(), echo=msg.sent_at))
        elif type(msg) is Stats:
            self._links.table.stats = msg
        elif type(msg) is ConfigUpdate:
            self._on_config(msg)
        elif type(msg) is Rollouts:
            self._links.table.rollouts.update(msg)
        elif type(msg) is Retire:
            self._on_retire(msg.grace)
        elif type(msg) is Shutdown:
            self._links.table.stop_accepting()
            self._on_shutdown(msg.grace)
        elif type(msg) is Error:
            log.error("%s: supervisor says: %s", self.name, msg.message)

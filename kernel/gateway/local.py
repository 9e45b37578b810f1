"""Workers in the gateway's own process: the seam ``kernel.testing.start_test_backend`` serves plugins through.

``LocalWorkers`` is the gateway's ``WorkerPool`` with the ZeroMQ socket replaced by the event loop:
everything else is the real path. The gateway side (``ApiDispatcher``: dot segments, auth policies,
credentials, body limit; ``GatewayStream``: the answer, with flow control) and the worker side
(``kernel.worker.dispatch.Dispatcher``: the ASGI scope with the principal, plugin errors in the error
shape) exchange the protocol's messages, encoded and decoded as on the wire and delivered one loop turn
later, as a socket would. There is no supervisor: the pool publishes its own worker table.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Protocol

from kernel.gateway.stream import WorkerGone, WorkerLink
from kernel.gateway.workers import WorkerPool
from kernel.protocol import AuthPolicy, Message, PluginState, WorkerTable, decode

#: how a worker answers the gateway (``kernel.worker.streams.Send``)
Reply = Callable[[bytes, "bytes | memoryview | None"], None]


class LocalWorker(Protocol):
    """What serves a plugin in this process: ``kernel.worker.dispatch.Dispatcher`` is one."""

    def on_message(self, index: int, msg: Message, frames: list[bytes], send: Reply) -> None: ...


class LocalWorkers(WorkerPool):
    """A ``WorkerPool`` whose workers are ``LocalWorker``s of this process; ``add`` one per plugin."""

    def __init__(self) -> None:
        super().__init__(0, "inproc://local-workers", "inproc://local-control", on_shutdown=lambda grace: None)
        self.name = "gateway-local"
        self._local: dict[bytes, LocalWorker] = {}
        self._table: dict[str, PluginState] = {}
        self._accepting = False

    def start(self) -> None:
        """Start accepting requests (no socket to open)."""
        self._accepting = True
        self._publish()

    def close(self) -> None:
        """Stop accepting requests: new ones are 503, as in a gateway that is shutting down."""
        self._accepting = False
        self._publish()

    def add(self, plugin_id: str, worker: LocalWorker, policies: Sequence[AuthPolicy]) -> None:
        """Serve ``plugin_id`` with ``worker``, behind ``policies``."""
        wid = f"{plugin_id}-local"
        self._local[wid.encode()] = worker
        self._table[plugin_id] = PluginState(plugin_id, "ready", list(policies), [wid], worker_states={wid: "ready"})
        self._publish()

    def set_policies(self, plugin_id: str, policies: Sequence[AuthPolicy]) -> None:
        """The plugin changed its auth policies (a worker's ``Policies`` message, republished at once)."""
        state = self._table[plugin_id]
        self._table[plugin_id] = PluginState(
            state.id, state.state, list(policies), state.workers, worker_states=state.worker_states
        )
        self._publish()

    def _publish(self) -> None:
        self._apply(WorkerTable(self.generation + 1, list(self._table.values()), self._accepting))

    def send(self, worker: WorkerLink, frame: bytes, data: bytes | None) -> None:
        target = self._local.get(worker.ident)
        if target is None:
            raise WorkerGone(f"worker {worker.id} of plugin '{worker.plugin_id}' is unreachable")
        frames = [frame] if data is None else [frame, bytes(data)]
        reply = self._replier(worker.ident)
        asyncio.get_running_loop().call_soon(target.on_message, 0, decode(frame), frames, reply)

    def _replier(self, ident: bytes) -> Reply:
        def reply(frame: bytes, data: bytes | memoryview | None) -> None:
            frames = [frame] if data is None else [frame, bytes(data)]
            asyncio.get_running_loop().call_soon(self._on_worker_message, ident, decode(frame), frames)

        return reply

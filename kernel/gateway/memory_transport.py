"""The gateway's transport to workers in its own process: the seam of ``kernel.testing.start_test_backend``.

A worker here is any object with ``on_message`` (``kernel.worker.dispatch.Dispatcher`` is one). Each
message is encoded and decoded as on the wire and delivered one loop turn later, as a socket would;
everything around it (the routing table, the streams, the dispatcher, the edge) is the production
gateway's own (``kernel.gateway.compose``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from kernel.gateway.links import Deliver
from kernel.gateway.relay import WorkerGone, WorkerLink
from kernel.protocol import Message, decode

#: how a worker answers the gateway (``kernel.worker.streams.Send``)
Reply = Callable[[bytes, "bytes | memoryview | None"], None]


class LocalWorker(Protocol):
    """What serves a plugin in this process: ``kernel.worker.dispatch.Dispatcher`` is one."""

    def on_message(self, index: int, msg: Message, frames: list[bytes], send: Reply) -> None: ...


class MemoryTransport:
    """Frames to and from ``LocalWorker``s of this process, by worker id."""

    def __init__(self) -> None:
        self._workers: dict[bytes, LocalWorker] = {}
        self._deliver: Deliver | None = None

    def add(self, wid: str, worker: LocalWorker) -> None:
        """``worker`` serves as worker ``wid`` (its routing id) from now on."""
        self._workers[wid.encode()] = worker

    def start(self, deliver: Deliver) -> None:
        self._deliver = deliver

    def close(self) -> None:
        self._deliver = None

    def send(self, worker: WorkerLink, frame: bytes, data: bytes | None) -> None:
        target = self._workers.get(worker.ident)
        if target is None or self._deliver is None:
            raise WorkerGone(f"worker {worker.id} of plugin '{worker.plugin_id}' is unreachable")
        frames = [frame] if data is None else [frame, bytes(data)]
        asyncio.get_running_loop().call_soon(target.on_message, 0, decode(frame), frames, self._replier(worker.ident))

    def _replier(self, ident: bytes) -> Reply:
        def reply(frame: bytes, data: bytes | memoryview | None) -> None:
            frames = [frame] if data is None else [frame, bytes(data)]
            deliver = self._deliver
            if deliver is not None:
                asyncio.get_running_loop().call_soon(deliver, ident, decode(frame), frames)

        return reply

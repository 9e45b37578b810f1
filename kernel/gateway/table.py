"""The routing table of one gateway: which ready worker serves which plugin, and who waits for one.

The supervisor's ``WorkerTable`` (through the control link, ``kernel.gateway.control``; in the test
backend, published by the test toolkit itself) is applied here: each plugin becomes a ``PluginRoute``
with the ``WorkerLink`` of each of its ready workers. A ``WorkerLink`` survives a new table while its
worker (and routing id) stays, so its count of open streams carries over.

Requests that wait wait here: for a new table (``table_change``: a plugin with no ready worker yet)
or for room on a plugin's workers (``room``: its ``maxInFlight`` reached, a bounded queue per plugin).
No I/O: the table is plain data and futures, tested without a process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from kernel.gateway.relay import WorkerLink
from kernel.gateway.rollouts import RolloutBoard
from kernel.protocol import AuthPolicy, PluginState, Stats, WorkerTable


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


class RoutingTable:
    """The worker table in force in this gateway, and the requests waiting on it.

    ``tolerated(plugin_id)`` says whether the plugin may fail without keeping the instance out of
    traffic (its ``onPluginBootFailure`` is ``continue``).
    """

    def __init__(self, tolerated: Callable[[str], bool] = lambda plugin_id: False) -> None:
        self.plugins: dict[str, PluginRoute] = {}
        self.states: dict[str, PluginState] = {}
        #: the supervisor's latest figures of every process (``None`` until its first tick)
        self.stats: Stats | None = None
        #: the operators' rollouts, as the supervisor last told them (``kernel.gateway.rollouts``)
        self.rollouts = RolloutBoard()
        self.accepting = False
        #: the instance leaves or the kernel stops (``WorkerTable.leaving``): readiness is 503, requests are
        #: still served while ``accepting``
        self.leaving = False
        self.seen = False
        self.generation = -1
        self._links: dict[str, WorkerLink] = {}
        self._tolerated = tolerated
        self._table_waiters: list[asyncio.Future[None]] = []
        #: per plugin: requests waiting for a worker with room (``maxInFlight``), oldest first
        self._queues: dict[str, list[asyncio.Future[None]]] = {}

    def apply(self, table: WorkerTable) -> set[str]:
        """Put ``table`` in force; the ids of the workers it no longer has (their streams must fail)."""
        if self.seen and table.generation == self.generation:
            return set()  # a resend of the table in force
        self.generation = table.generation
        links: dict[str, WorkerLink] = {}
        for p in table.plugins:
            for wid in (*p.workers, *p.draining):  # a draining worker takes no new stream but ends its own
                link = self._links.get(wid)
                route = p.routes.get(wid, "")
                same = link is not None and link.ident == (route or wid).encode()
                links[wid] = link if same and link is not None else WorkerLink(wid, p.id, route)
        gone = set(self._links) - set(links)
        self._links = links
        self.plugins = {p.id: PluginRoute(p, links) for p in table.plugins}
        self.states = {p.id: p for p in table.plugins}
        self.accepting = table.accepting
        self.leaving = table.leaving
        self.seen = True
        waiters, self._table_waiters = self._table_waiters, []
        for queue in self._queues.values():  # new workers may have room
            waiters += queue
            queue.clear()
        for w in waiters:
            _settle(w)
        return gone

    def stop_accepting(self) -> None:
        """This gateway stops: new requests are refused (503) until a table says otherwise."""
        self.accepting = False

    async def table_change(self, timeout: float) -> None:
        """Wait for the next worker table (or ``timeout`` seconds)."""
        await _wait_in(self._table_waiters, timeout)

    def queue(self, plugin_id: str) -> list[asyncio.Future[None]]:
        """The requests waiting for room on ``plugin_id``'s workers, oldest first."""
        return self._queues.setdefault(plugin_id, [])

    async def room(self, plugin_id: str, timeout: float) -> None:
        """Wait in ``plugin_id``'s queue until one of its streams ends (or a new table, or ``timeout``)."""
        await _wait_in(self.queue(plugin_id), timeout)

    def released(self, plugin_id: str) -> None:
        """A stream of ``plugin_id`` ended: the oldest request waiting for room takes it."""
        queue = self._queues.get(plugin_id)
        while queue:
            waiter = queue.pop(0)
            if not waiter.done():  # one whose request was cancelled (its client left) takes no room
                waiter.set_result(None)
                return

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready when every plugin has a ready worker, except failed plugins allowed to fail (listed as ``failed``).

        A plugin failed under ``onPluginBootFailure: abort`` (flapping, say) keeps the instance unready.
        """
        if not self.seen:
            return False, {"status": "starting"}
        if not self.accepting or self.leaving:
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

"""Replacing a plugin's workers without a gap: all of them (``kernel serve --dev`` after a source
change), or one (recycling a worker over its memory or request limit).

New workers start beside the old ones; only once every new one is ready does the
table route to them and mark the old ones draining; once every gateway says it
routes by that table, the old ones are told to stop: they finish the requests and
sockets they serve, and take no new ones. A new worker that fails to start leaves
the old ones serving (the error is in the log); the next change tries again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from kernel.protocol import Shutdown

if TYPE_CHECKING:
    from kernel.supervisor.children import Child
    from kernel.supervisor.supervisor import Supervisor

log = logging.getLogger("kernel")
POLL = 0.02  # how often a replacement looks at its new workers' state
APPLY_TIMEOUT = 5.0  # longest wait for the gateways to route by the new table


class Replacer:
    """One replacement at a time per plugin; a change during one is replayed after it."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.sup = supervisor
        self._running: dict[str, asyncio.Task[None]] = {}
        self._again: dict[str, tuple[str, Child | None]] = {}

    def request(self, plugin_id: str, why: str, only: Child | None = None) -> None:
        """Replace every worker of ``plugin_id``, or ``only`` that one."""
        if plugin_id in self._running:
            queued = self._again.get(plugin_id)
            # a queued replacement of every worker covers any single one
            self._again[plugin_id] = (why, None if queued is not None and queued[1] is not only else only)
            return
        task = asyncio.get_running_loop().create_task(self._replace(plugin_id, why, only))
        self._running[plugin_id] = task
        task.add_done_callback(lambda _t: self._finished(plugin_id))

    def _finished(self, plugin_id: str) -> None:
        self._running.pop(plugin_id, None)
        again = self._again.pop(plugin_id, None)
        if again is not None and not self.sup.stopping:
            self.request(plugin_id, *again)

    async def _replace(self, plugin_id: str, why: str, only: Child | None) -> None:
        sup = self.sup
        plugin = sup.plugins[plugin_id]
        started = time.monotonic()
        if only is not None and (only.ident not in sup.children or only.retiring):
            return  # gone or replaced meanwhile
        old = (
            [only]
            if only is not None
            else [
                c for c in sup.children.values() if c.kind == "worker" and c.plugin_id == plugin_id and not c.retiring
            ]
        )
        log.info("plugin '%s': %s; starting %s", plugin_id, why, "a new worker" if only else "new workers")
        if plugin.state == "failed":  # it gave up restarting: new code gets a fresh start
            plugin.state, plugin.reason = "starting", ""
            plugin.restarts.deaths.clear()
        slots = [only.slot] if only is not None else list(range(plugin.replicas))
        new = [sup.start_worker(plugin, slot, replacing=True) for slot in slots]
        while not all(c.ready for c in new):
            if sup.stopping:
                return
            if any(c.ident not in sup.children for c in new):  # one died before it was ready
                for c in new:
                    if c.ident in sup.children:
                        c.process.terminate()
                for c in old:
                    c.recycling = False  # may be tried again
                log.error(
                    "plugin '%s': the new workers did not start (see the log above); %s",
                    plugin_id,
                    "the running ones keep serving" if old else "fix the code and save again",
                )
                return
            await asyncio.sleep(POLL)
        for c in new:
            c.replacing = False
        for c in old:
            c.retiring = True
            sup.stats.recycled(plugin_id)
        sup.publish()
        await self._gateways_applied(sup.generation)
        grace = sup.settings.workers.shutdown_grace
        for c in old:
            if c.ident in sup.children:
                sup.control.send(c, Shutdown(grace))
        seconds = time.monotonic() - started
        log.info(
            "plugin '%s' %s in %.2fs; the old %s", plugin_id, f"worker {only.ident} replaced" if only else "replaced",
            seconds, "one drains" if only else "workers drain",
        )  # fmt: skip
        await self._reap_stragglers(old, grace + sup.settings.workers.kill_timeout)

    async def _gateways_applied(self, generation: int) -> None:
        deadline = time.monotonic() + APPLY_TIMEOUT
        while time.monotonic() < deadline:
            gateways = [c for c in self.sup.children.values() if c.kind == "gateway" and c.ready]
            if all(c.applied >= generation for c in gateways):
                return
            await asyncio.sleep(POLL)
        log.warning("not every gateway confirmed the new worker table within %.0fs", APPLY_TIMEOUT)

    async def _reap_stragglers(self, old: list[Child], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while any(c.ident in self.sup.children for c in old):
            if time.monotonic() > deadline:
                for c in old:
                    if c.ident in self.sup.children:
                        log.error("worker %s did not stop after draining; killing it", c.ident)
                        c.process.kill()
                return
            await asyncio.sleep(0.1)

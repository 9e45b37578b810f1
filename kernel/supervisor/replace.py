"""Replacing a plugin's workers without a gap: all of them (``kernel serve --dev`` after a source
change), or one (recycling a worker over its memory or request limit; a remote worker is not replaced here: it drains
and joins again).

New workers start beside the old ones; only once every new one is ready does the
table route to them and mark the old ones draining; once every gateway says it
routes by that table, the old ones are told to stop: they finish the requests and
sockets they serve, and take no new ones. A new worker that fails to start leaves
the old ones serving (the error is in the log); the next change tries again.

Whoever asked may follow it (``Report``): each step as the operator reads it, then the outcome
once the old workers are gone (``kernel rollout``, ``kernel.supervisor.rollout``).

The ``Replacer`` sees the supervisor only as a ``ReplaceHost``, and waits on its ``Changes``
(a worker ready or gone, a table applied, the kernel stopping): it never polls.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from kernel.protocol import Shutdown
from kernel.supervisor.children import Child
from kernel.supervisor.host import Changes, ReplaceHost

log = logging.getLogger("kernel")
APPLY_TIMEOUT = 5.0  # longest wait for the gateways to route by the new table


@dataclass(frozen=True)
class Report:
    """Who follows a replacement: ``step(text)`` for each step, ``done(error)`` once at the end (``""``: it worked)."""

    step: Callable[[str], None]
    done: Callable[[str], None]


def _describe_exit(child: Child) -> str:
    code = child.exit_code
    if code is None:
        return "exited"
    return f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"


class Replacer:
    """One replacement at a time per plugin; a change during one is replayed after it.

    ``grace`` is how long an old worker may drain; ``kill_timeout`` how much longer it gets to exit.
    """

    def __init__(self, host: ReplaceHost, changes: Changes, *, grace: float, kill_timeout: float) -> None:
        self.host = host
        self.changes = changes
        self.grace = grace
        self.kill_timeout = kill_timeout
        self._running: dict[str, asyncio.Task[str]] = {}
        self._again: dict[str, tuple[str, Child | None, list[Report]]] = {}

    def request(self, plugin_id: str, why: str, only: Child | None = None, report: Report | None = None) -> None:
        """Replace every worker of ``plugin_id``, or ``only`` that one; ``report`` follows it."""
        reports = [report] if report is not None else []
        if plugin_id in self._running:
            queued = self._again.get(plugin_id)
            # a queued replacement of every worker covers any single one
            which = None if queued is not None and queued[1] is not only else only
            self._again[plugin_id] = (why, which, [*(queued[2] if queued else []), *reports])
            return
        self._start(plugin_id, why, only, reports)

    def _start(self, plugin_id: str, why: str, only: Child | None, reports: list[Report]) -> None:
        task = asyncio.get_running_loop().create_task(self._replace(plugin_id, why, only, reports))
        self._running[plugin_id] = task
        task.add_done_callback(lambda t: self._finished(plugin_id, t, reports))

    def _finished(self, plugin_id: str, task: asyncio.Task[str], reports: list[Report]) -> None:
        self._running.pop(plugin_id, None)
        if task.cancelled():
            error = "the replacement was cancelled"
        elif (exc := task.exception()) is not None:
            log.error("plugin '%s': replacing its workers failed", plugin_id, exc_info=exc)
            error = f"plugin '{plugin_id}': replacing its workers failed: {exc!r}"
        else:
            error = task.result()
        for r in reports:
            r.done(error)
        again = self._again.pop(plugin_id, None)
        if again is None:
            return
        if self.host.stopping:
            for r in again[2]:
                r.done("the kernel is stopping")
            return
        self._start(plugin_id, *again)

    async def _replace(self, plugin_id: str, why: str, only: Child | None, reports: list[Report]) -> str:
        """The replacement; ``""`` once done, else why it failed."""
        host = self.host
        children = host.children
        plugin = host.plugins[plugin_id]
        started = time.monotonic()

        def step(text: str) -> None:
            for r in reports:
                r.step(f"plugin '{plugin_id}': {text}")

        if only is not None and (only.ident not in children or only.retiring):
            return ""  # gone or replaced meanwhile
        old = (
            [only]
            if only is not None
            else [
                c
                for c in children.values()
                if c.kind == "worker" and c.plugin_id == plugin_id and not c.retiring and not c.key  # remote: theirs
            ]
        )
        if only is not None and only.key:  # remote: no replacement here; it drains, then joins again
            log.info("plugin '%s': %s; it drains and joins again", plugin_id, why)
            new: list[Child] = []
        else:
            log.info("plugin '%s': %s; starting %s", plugin_id, why, "a new worker" if only else "new workers")
            if plugin.state == "failed":  # it gave up restarting: new code gets a fresh start
                plugin.state, plugin.reason = "starting", ""
                plugin.restarts.deaths.clear()
            slots = [only.slot] if only is not None else list(range(plugin.replicas))
            new = [host.start_worker(plugin, slot, replacing=True) for slot in slots]
            step(f"starting {len(new)} new worker{'s' if len(new) != 1 else ''}: {_listed(new)}")

        def all_ready() -> bool:
            return all(c.ready for c in new)

        def one_died() -> bool:  # before it was ready
            return any(c.ident not in host.children for c in new)

        await self.changes.wait_for(lambda: all_ready() or host.stopping or one_died())
        if not all_ready():
            if host.stopping:
                return "the kernel is stopping"
            dead = [c for c in new if c.ident not in host.children]
            for c in new:
                if c.ident in host.children:
                    c.process.terminate()
            for c in old:
                c.recycling = False  # may be tried again
            log.error(
                "plugin '%s': the new workers did not start (see the log above); %s",
                plugin_id,
                "the running ones keep serving" if old else "fix the code and save again",
            )
            why_not = "; ".join(f"worker {c.ident} {_describe_exit(c)} before it was ready" for c in dead)
            keep = "the running workers keep serving" if old else "the plugin has no running worker"
            return f"plugin '{plugin_id}': the new workers did not start ({why_not or 'stopped'}); {keep}"
        for c in new:
            c.replacing = False
        for c in old:
            c.retiring = True
            host.recycled(plugin_id)
        generation = host.publish()
        step(f"new workers ready (pid {', '.join(str(c.process.pid) for c in new)}); the gateways route to them")
        await self._gateways_applied(generation)
        for c in old:
            if c.ident in host.children:
                host.send(c, Shutdown(self.grace))
        seconds = time.monotonic() - started
        log.info(
            "plugin '%s' %s in %.2fs; the old %s", plugin_id, f"worker {only.ident} replaced" if only else "replaced",
            seconds, "one drains" if only else "workers drain",
        )  # fmt: skip
        if old:
            step(f"the old workers drain: {_listed(old)}")
        await self._reap_stragglers(old, self.grace + self.kill_timeout)
        if old:
            step(f"the old workers are gone ({time.monotonic() - started:.2f}s after the start)")
        return ""

    async def _gateways_applied(self, generation: int) -> None:
        def applied() -> bool:
            gateways = [c for c in self.host.children.values() if c.kind == "gateway" and c.ready]
            return all(c.applied >= generation for c in gateways)

        if not await self.changes.wait_for(applied, APPLY_TIMEOUT):
            log.warning("not every gateway confirmed the new worker table within %.0fs", APPLY_TIMEOUT)

    async def _reap_stragglers(self, old: list[Child], timeout: float) -> None:
        host = self.host
        if await self.changes.wait_for(lambda: not any(c.ident in host.children for c in old), timeout):
            return
        for c in old:
            if c.ident in host.children:
                log.error("worker %s did not stop after draining; killing it", c.ident)
                c.process.kill()


def _listed(children: list[Child]) -> str:
    return ", ".join(f"{c.ident} (pid {c.process.pid})" for c in children)

"""Rollouts an operator asks for (``kernel rollout``, ``POST /.kernel/rollout/v1/rollouts``), one at a time.

A gateway forwards the operator's request (``RolloutRequest``); the supervisor runs it here and tells
every gateway where each rollout stands (``Rollouts``, the last ``KEEP``), so that any gateway can
answer the operator's questions about it, a gateway started since included.

**Plugins.** The config files are read again first: a config that does not load fails the rollout
before anything is replaced; a changed one goes to every process as a reload would. Then each
plugin's workers are replaced, one plugin after the other, exactly as ``--dev`` replaces them
(``kernel.supervisor.replace``): new workers (the package as installed now, the config as it is now)
start beside the old ones, take the traffic once every one of them is ready, and the old ones drain
and exit. A new worker that fails to start fails the rollout, names it, and leaves the old ones
serving; the plugins after it are not touched.

**Gateways.** One at a time: the gateway is told to retire (``Retire``: it stops accepting on the
shared listener, finishes its open connections within ``grace`` and exits), then a new one starts
in its place on the same listener and worker socket, and must be routing before the next one goes.
New connections wait in the listener's backlog, or go to the other gateways, meanwhile.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import importlib.metadata
import logging
import time
from collections.abc import Callable

import msgspec

from kernel.protocol import Retire, RolloutRequest, Rollouts, RolloutState, RolloutStep
from kernel.supervisor.children import Child
from kernel.supervisor.host import Changes, RolloutHost
from kernel.supervisor.replace import Replacer, Report

log = logging.getLogger("kernel")
#: rollouts the gateways are told of (the running one and the last finished ones)
KEEP = 20


class RolloutRunner:
    """Runs the rollouts gateways forward, one at a time, and keeps the gateways told of them."""

    def __init__(
        self,
        host: RolloutHost,
        changes: Changes,
        replacer: Replacer,
        *,
        grace: float,
        kill_timeout: float,
        start_timeout: float,
    ) -> None:
        self.host = host
        self.changes = changes
        self.replacer = replacer
        self.grace = grace
        self.kill_timeout = kill_timeout
        self.start_timeout = start_timeout
        self._states: list[RolloutState] = []
        self._running: asyncio.Task[None] | None = None

    def message(self) -> Rollouts:
        """Every rollout kept, for a gateway (sent on each change, and to a gateway once it is ready)."""
        return Rollouts(list(self._states))

    def request(self, msg: RolloutRequest) -> None:
        """A gateway forwarded an operator's rollout: run it, unless one runs (then it is refused)."""
        now = time.time()
        plugins = list(self.host.plugins) if msg.all_plugins else list(msg.plugins)
        state = RolloutState(msg.id, "running", plugins, msg.gateways, now)
        busy = next((s for s in self._states if s.state == "running"), None)
        unknown = [p for p in plugins if p not in self.host.plugins]
        refusal = ""
        if busy is not None:
            refusal = f"rollout {busy.id} is still running; try again once it is done"
        elif unknown:
            refusal = f"no running plugin with id {', '.join(repr(p) for p in unknown)}"
        elif not plugins and not msg.gateways:
            refusal = "nothing to roll out: name plugins, or the gateways"
        elif self.host.stopping:
            refusal = "the kernel is stopping"
        if refusal:
            log.warning("rollout %s refused: %s", msg.id, refusal)
            self._keep(msgspec.structs.replace(state, state="refused", error=refusal, finished_at=now))
            return
        what = "the gateways" if msg.gateways else "plugin " + ", ".join(f"'{p}'" for p in plugins)
        log.info("rollout %s of %s, asked by %s", msg.id, what, msg.by or "an operator")
        self._keep(state)
        self._running = asyncio.get_running_loop().create_task(self._run(msg.id, plugins, msg.gateways))

    def _keep(self, state: RolloutState) -> None:
        """Record ``state`` (replacing the rollout's older one) and tell every gateway."""
        kept = [s for s in self._states if s.id != state.id]
        self._states = [*kept, state][-KEEP:]
        self.host.to_gateways(self.message())

    def _current(self, rollout_id: str) -> RolloutState:
        return next(s for s in self._states if s.id == rollout_id)

    def _step(self, rollout_id: str, text: str) -> None:
        log.info("rollout %s: %s", rollout_id, text)
        state = self._current(rollout_id)
        self._keep(msgspec.structs.replace(state, steps=[*state.steps, RolloutStep(time.time(), text)]))

    def _finish(self, rollout_id: str, error: str) -> None:
        state = self._current(rollout_id)
        seconds = time.time() - state.requested_at
        if error:
            log.error("rollout %s failed after %.2fs: %s", rollout_id, seconds, error)
        else:
            log.info("rollout %s done in %.2fs", rollout_id, seconds)
        finished = msgspec.structs.replace(
            state, state="failed" if error else "succeeded", error=error, finished_at=time.time()
        )
        self._keep(finished)

    async def _run(self, rollout_id: str, plugins: list[str], gateways: bool) -> None:
        try:
            error = await (self._gateways(rollout_id) if gateways else self._plugins(rollout_id, plugins))
        except Exception as exc:  # a bug here must not leave the rollout running forever
            log.exception("rollout %s broke off", rollout_id)
            error = f"the rollout broke off: {exc!r}"
        self._finish(rollout_id, error)

    # -- plugins -------------------------------------------------------------------
    async def _plugins(self, rollout_id: str, plugins: list[str]) -> str:
        step: Callable[[str], None] = lambda text: self._step(rollout_id, text)  # noqa: E731
        error, changed = await self.host.reload_config()
        if error:
            return f"the config does not load, nothing was replaced: {error}"
        step("the config changed: every process has the new one" if changed else "the config is unchanged")
        for plugin_id in plugins:
            if self.host.stopping:
                return "the kernel is stopping"
            before, now = self._refresh_version(plugin_id)
            if before != now:
                step(f"plugin '{plugin_id}': installed version {now} (was {before})")
            outcome: asyncio.Future[str] = asyncio.get_running_loop().create_future()

            def done(error: str, outcome: asyncio.Future[str] = outcome) -> None:
                if not outcome.done():
                    outcome.set_result(error)

            self.replacer.request(plugin_id, f"rollout {rollout_id}", report=Report(step, done))
            error = await outcome
            if error:
                rest = plugins[plugins.index(plugin_id) + 1 :]
                return error + (f" (not rolled out: {', '.join(rest)})" if rest else "")
        return ""

    def _refresh_version(self, plugin_id: str) -> tuple[str, str]:
        """The installed version of the plugin's package, read again (the dashboard shows it): before, now."""
        record = self.host.plugins[plugin_id]
        before = record.entry.version
        importlib.invalidate_caches()
        try:
            now = importlib.metadata.version(record.entry.distribution)
        except importlib.metadata.PackageNotFoundError:  # not installed as a distribution: keep what is known
            return before, before
        if now != before:
            record.entry = dataclasses.replace(record.entry, version=now)
        return before, now

    # -- gateways ------------------------------------------------------------------
    async def _gateways(self, rollout_id: str) -> str:
        host = self.host
        gateways = sorted((c for c in host.children.values() if c.kind == "gateway"), key=lambda c: c.slot)
        for old in gateways:
            error = await self._replace_gateway(rollout_id, old)
            if error:
                return error
        return ""

    async def _replace_gateway(self, rollout_id: str, old: Child) -> str:
        """Retire gateway ``old`` and start its successor; ``""`` once the new one routes, else why not."""
        host = self.host
        slot = old.slot
        if host.stopping:
            return "the kernel is stopping"
        if host.children.get(old.ident) is not old:  # died meanwhile: restarted as after a crash
            self._step(rollout_id, f"gateway {slot} was restarted after a crash meanwhile; left as it is")
            return ""
        self._step(rollout_id, f"gateway {slot} (pid {old.process.pid}) stops accepting and drains")
        old.retiring = True  # its exit is no death to restart after
        host.send(old, Retire(self.grace))
        if not await self._gone(old, self.grace + self.kill_timeout):
            log.error("gateway %d did not stop after draining; killing it", slot)
            old.process.kill()
            await self._gone(old, self.kill_timeout)
        if host.stopping:
            return "the kernel is stopping"
        new = host.start_gateway(slot)
        started = await self.changes.wait_for(
            lambda: (new.ready and new.applied >= 0) or host.children.get(new.ident) is not new or host.stopping,
            self.start_timeout,
        )
        if host.stopping:
            return "the kernel is stopping"
        if not started or host.children.get(new.ident) is not new:
            how = f"exit code {new.exit_code}" if new.exit_code is not None else "not ready in time"
            return f"the new gateway {slot} did not start ({how}); the supervisor restarts it as after a crash"
        self._step(rollout_id, f"gateway {slot}: the new one (pid {new.process.pid}) serves")
        return ""

    async def _gone(self, child: Child, timeout: float) -> bool:
        host = self.host
        return await self.changes.wait_for(
            lambda: host.children.get(child.ident) is not child or host.stopping, timeout
        )

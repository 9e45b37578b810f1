"""The supervisor's run loop: start every child, watch, restart, push configs, drain, stop.

The config is loaded and validated once, by the ``kernel`` command; the
supervisor owns it from then on. Children get it in their spec; when
``backend.config.reload`` is on, the supervisor alone watches the files and
pushes each changed config to every gateway and worker (``ConfigUpdate``), so
auth in the gateways follows a reload like plugin config does. Settings that
shape processes (listen address, gateway count, replicas, heartbeats) keep the
values the kernel started with.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
import time
from pathlib import Path

from kernel.config import Config, ReloadingConfig
from kernel.launch import config_update
from kernel.metrics.files import make_directory, remove_directory
from kernel.os_users import DataPreparer
from kernel.protocol import AuthPolicy, Heartbeat, Hello, Policies, Shutdown, encode
from kernel.registry import PluginEntry
from kernel.settings import Settings
from kernel.supervisor.children import Child, Launcher
from kernel.supervisor.control import ControlChannel
from kernel.supervisor.limits import check_limits
from kernel.supervisor.replace import Replacer
from kernel.supervisor.restarts import RestartPolicy
from kernel.supervisor.sources import SourceWatcher, source_roots
from kernel.supervisor.stats import StatsKeeper
from kernel.supervisor.table import PluginRecord, build_table
from kernel.transport.endpoints import IpcTransport, Transport

log = logging.getLogger("kernel")
GATEWAY_RESTART_DELAY = 0.2


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        config: ReloadingConfig,
        plugins: list[PluginEntry],
        providers: list[str],
        *,
        dev: bool = False,
        failed: dict[str, str] | None = None,
        transport: Transport | None = None,
        prepare_data: DataPreparer | None = None,
    ) -> None:
        self.settings = settings
        self.config = config
        self.dev = dev
        w = settings.workers
        self.plugins = {
            p.id: PluginRecord(
                p,
                settings.replicas(p.id),
                settings.boot_policy(p.id),
                RestartPolicy(w.flapping_limit, w.flapping_window, w.restart_initial_delay, w.restart_max_delay),
            )
            for p in plugins
        }
        self.failed_at_load = dict(failed or {})
        self.transport = transport or IpcTransport()
        self.launcher = Launcher(
            settings, self.transport, providers, lambda: self.config.current, dev=dev, prepare_data=prepare_data
        )
        self.children: dict[str, Child] = {}
        self.control = ControlChannel(
            self.launcher.control, self.children, self._on_ready, self.publish, self._on_policies
        )
        self.generation = 0
        self._last_table = b""
        self.accepting = True
        self.stopping = False
        self._stop = asyncio.Event()
        self._abort: str | None = None
        self._signal: int | None = None
        self._gateway_deaths = RestartPolicy(w.flapping_limit, w.flapping_window, 0.0, 0.0)
        self.listener: socket.socket | None = None
        self.metrics_listener: socket.socket | None = None
        self.metrics_dir = ""
        self.replacer = Replacer(self)
        self.stats = StatsKeeper()

    # -- children ------------------------------------------------------------------
    def start_gateway(self, index: int) -> None:
        assert self.listener is not None
        metrics_fd = self.metrics_listener.fileno() if self.metrics_listener is not None else -1
        child = self.launcher.gateway(index, self.listener.fileno(), metrics_fd)
        self.children[child.ident] = child

    def start_worker(self, plugin: PluginRecord, slot: int, *, replacing: bool = False) -> Child:
        child = self.launcher.worker(plugin.entry, slot)
        child.replacing = replacing
        self.children[child.ident] = child
        return child

    def _on_ready(self, child: Child, hello: Hello) -> None:
        if child.kind == "gateway":
            self.control.send(child, self._table())
            return
        plugin = self.plugins[child.plugin_id]
        plugin.policies = list(hello.policies)
        if not plugin.ever_ready:
            log.info("plugin '%s' is ready (worker pid %d)", plugin.id, hello.pid)
        plugin.ever_ready = True
        plugin.cooldowns = 0
        plugin.restarts.started()
        self.publish()

    def _on_policies(self, child: Child, msg: Policies) -> None:
        plugin = self.plugins[child.plugin_id]
        if plugin.policies != msg.policies:
            log.info("plugin '%s' changed its auth policies: %s", plugin.id, _describe(msg.policies) or "none")
            plugin.policies = list(msg.policies)
            self.publish()

    # -- the worker table ------------------------------------------------------------
    def _table(self) -> bytes:
        table = build_table(
            self.generation, self.plugins.values(), self.children.values(), self.failed_at_load, self.accepting
        )
        return encode(table)

    def publish(self) -> None:
        """Send gateways a new table after a change."""
        self.generation += 1
        self._last_table = self._table()
        self._resend()

    def _resend(self) -> None:
        """Send the current table again (a gateway may have missed it); gateways skip a known one."""
        if self._last_table:
            self.control.broadcast(self._gateways(), self._last_table)

    def _gateways(self) -> list[Child]:
        return [c for c in self.children.values() if c.kind == "gateway"]

    def _push_config(self, config: Config) -> None:
        """A reload changed the config: every running child switches to it."""
        self.control.broadcast(list(self.children.values()), config_update(config))

    # -- watching --------------------------------------------------------------------
    def _reap(self) -> None:
        for child in list(self.children.values()):
            code = child.process.exit_code()
            if code is not None:
                self._on_exit(child, code)

    def _on_exit(self, child: Child, code: int) -> None:
        self.children.pop(child.ident, None)
        self.stats.on_exit(child)
        if self.stopping:
            return
        if child.retiring:  # replaced, and done draining
            self.publish()
            return
        if child.replacing and not child.ready:  # a replacement that did not start: the Replacer reports it
            log.error("worker %s (replacing plugin '%s') exited with code %d", child.ident, child.plugin_id, code)
            return
        loop = asyncio.get_running_loop()
        if child.kind == "gateway":
            if self._gateway_deaths.died():
                self._abort = f"gateway {child.slot} keeps dying (last exit code {code}); giving up"
                self._stop.set()
                return
            log.error("gateway %d exited with code %d; restarting", child.slot, code)
            loop.call_later(GATEWAY_RESTART_DELAY, self._restart_gateway, child.slot)
            return
        plugin = self.plugins[child.plugin_id]
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        if not plugin.ever_ready and plugin.policy == "abort":
            self._abort = f"plugin '{plugin.id}' (package '{plugin.entry.distribution}') failed to start: worker {how}"
            self._stop.set()
            return
        log.error("worker %s of plugin '%s' died (%s)", child.ident, plugin.id, how)
        if plugin.restarts.died():
            cooldown = self.settings.workers.flapping_cooldown * 2 ** min(plugin.cooldowns, 4)
            plugin.cooldowns += 1
            plugin.state = "failed"
            window = plugin.restarts.window
            plugin.reason = (
                f"failed: {len(plugin.restarts.deaths)} worker deaths within {window:g}s (last: {how}); "
                f"trying again in {cooldown:g}s"
            )
            log.error("plugin '%s' %s", plugin.id, plugin.reason)
            self.publish()
            loop.call_later(cooldown, self._after_cooldown, plugin)
            return
        delay = plugin.restarts.next_delay()
        self.stats.restarted(plugin.id)
        self.publish()
        loop.call_later(delay, self._restart_worker, plugin, child.slot)

    def _restart_worker(self, plugin: PluginRecord, slot: int) -> None:
        if not self.stopping and plugin.state != "failed":
            self.start_worker(plugin, slot)

    def _after_cooldown(self, plugin: PluginRecord) -> None:
        """A plugin stopped for flapping gets another start (the next failure waits twice as long)."""
        if self.stopping or plugin.state != "failed":
            return
        log.info("plugin '%s': cool-down over, starting it again", plugin.id)
        plugin.state, plugin.reason = "starting", ""
        plugin.restarts.deaths.clear()
        busy = {c.slot for c in self.children.values() if c.kind == "worker" and c.plugin_id == plugin.id}
        for slot in range(plugin.replicas):
            if slot not in busy:
                self.start_worker(plugin, slot)
        self.publish()

    def _restart_gateway(self, index: int) -> None:
        if not self.stopping:
            self.start_gateway(index)

    async def _watch(self) -> None:
        w = self.settings.workers
        while True:
            await asyncio.sleep(w.heartbeat_interval)
            self._reap()
            now = time.monotonic()
            if not self.stopping:
                check_limits(self)
                self.control.broadcast(self._gateways(), self.stats.sample(self.children.values()))
            beat = encode(Heartbeat(time.time()))  # answers carry it back: the round trip
            for child in list(self.children.values()):
                if child.ready:
                    self.control.send(child, beat)
                limit = w.heartbeat_timeout if child.ready else w.start_timeout
                if now - (child.seen if child.ready else child.started) > limit:
                    what = "stopped answering" if child.ready else "did not become ready"
                    log.error("%s %s %s within %.1fs; killing it", child.kind, child.ident, what, limit)
                    child.process.kill()
            if not self.stopping:
                self._resend()

    # -- main ------------------------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self.control.start()
        listen = self.settings.listen
        try:
            self.listener = socket.create_server((listen.host, listen.port), backlog=2048)
        except OSError as exc:
            log.error("cannot listen on %s:%d: %s", listen.host, listen.port, exc.strerror)
            self.control.close()
            self.transport.close()
            return 1
        self.listener.set_inheritable(True)
        if not self._open_metrics():
            self.control.close()
            self.transport.close()
            self.listener.close()
            return 1
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        loop.add_signal_handler(signal.SIGCHLD, self._reap)
        self.config.subscribe(self._push_config)
        await self.config.start()
        for i in range(self.settings.gateway.processes):
            self.start_gateway(i)
        for plugin in self.plugins.values():
            for slot in range(plugin.replicas):
                self.start_worker(plugin, slot)
        for pid, reason in self.failed_at_load.items():
            log.error("plugin '%s' not started: %s", pid, reason)
        log.info(
            "kernel listening on %s://%s:%d with %d plugin(s): %s",
            "https" if self.settings.edge.https is not None else "http",
            listen.host,
            self.listener.getsockname()[1],  # the port the listener got (backend.listen.port 0: a free one)
            len(self.plugins),
            ", ".join(self.plugins) or "none",
        )
        if self.metrics_listener is not None:
            host, port = self.metrics_listener.getsockname()[:2]
            log.info("metrics on http://%s:%d%s", host, port, self.settings.metrics.path)
        watch = loop.create_task(self._watch())
        sources = loop.create_task(self._watch_sources()) if self.dev else None
        await self._stop.wait()
        watch.cancel()
        if sources is not None:
            sources.cancel()
        await self.config.stop()
        await self.shutdown()
        if self._abort is not None:
            print(f"kernel: {self._abort}", file=sys.stderr)
            return 1
        # SIGTERM is a process manager's normal stop (0); SIGINT (Ctrl-C) an interruption, 128 + 2 as shells do
        return 128 + signal.SIGINT if self._signal == signal.SIGINT else 0

    async def _watch_sources(self) -> None:
        """``--dev``: a plugin whose code changed gets new workers (the others never notice)."""
        roots = {pid: source_roots(p.entry) for pid, p in self.plugins.items()}

        def changed(plugin_id: str, files: list[str]) -> None:
            shown = ", ".join(Path(f).name for f in files[:3]) + (" ..." if len(files) > 3 else "")
            self.replacer.request(plugin_id, f"source changed ({shown})")

        await SourceWatcher(roots, changed).run()

    def _on_signal(self, sig: int) -> None:
        if self._signal is None:
            self._signal = sig
        self._stop.set()

    async def shutdown(self) -> None:
        """Drain: refuse new requests, let in-flight ones finish, stop workers, then force."""
        self.stopping = True
        self.accepting = False
        w = self.settings.workers
        grace = 0.0 if self._abort else w.shutdown_grace
        self.publish()
        gateways = self._gateways()
        for c in gateways:
            self.control.send(c, Shutdown(grace))
        await self._wait_exit(gateways, grace + 2.0)
        workers = [c for c in self.children.values() if c.kind == "worker"]
        for c in workers:
            self.control.send(c, Shutdown(1.0))
        await self._wait_exit(workers, 2.0)
        remaining = [c for c in self.children.values() if c.process.exit_code() is None]
        for c in remaining:
            c.process.terminate()
        await self._wait_exit(remaining, w.kill_timeout)
        for c in self.children.values():
            if c.process.exit_code() is None:
                log.error("%s %s ignored SIGTERM; killing it", c.kind, c.ident)
                c.process.kill()
                c.process.wait()
        self.control.close()
        if self.listener is not None:
            self.listener.close()
        if self.metrics_listener is not None:
            self.metrics_listener.close()
        if self.metrics_dir:
            remove_directory(self.metrics_dir)
        self.transport.close()
        log.info("kernel stopped")

    def _open_metrics(self) -> bool:
        """``backend.metrics``: the shared directory, and the metrics' own listener if it has one."""
        m = self.settings.metrics
        if not m.enabled:
            return True
        if m.listener == "own":
            try:
                self.metrics_listener = socket.create_server((m.host, m.port), backlog=128)
            except OSError as exc:
                log.error("cannot listen on %s:%d for metrics (backend.metrics.port): %s", m.host, m.port, exc.strerror)
                return False
            self.metrics_listener.set_inheritable(True)
        self.metrics_dir = make_directory()
        return True

    async def _wait_exit(self, children: list[Child], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(c.process.exit_code() is None for c in children):
            await asyncio.sleep(0.05)


def startup_failure_message(failures: list[str]) -> str:
    lines = ["kernel: cannot start:"]
    lines += [f"  - {f}" for f in failures]
    lines.append("Fix the package, uninstall it, or set backend.startup.plugins.<id>.onPluginBootFailure: continue")
    return "\n".join(lines)


def _describe(policies: list[AuthPolicy]) -> str:
    return ", ".join(f"{p.path} ({p.allow})" for p in policies)

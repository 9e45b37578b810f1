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
from collections.abc import Awaitable, Callable
from pathlib import Path

from kernel.config import Config, ReloadingConfig
from kernel.errors import ConfigError
from kernel.launch import config_update
from kernel.metrics.files import remove_directory
from kernel.os_users import DataPreparer
from kernel.protocol import AuthPolicy, Heartbeat, Hello, Message, Policies, Shutdown, encode
from kernel.registry import PluginEntry
from kernel.settings import Settings, read_logging_settings, read_settings
from kernel.supervisor.children import Child, DataPaths, Launcher, LoginMaker
from kernel.supervisor.control import ControlChannel
from kernel.supervisor.host import Changes
from kernel.supervisor.isolation import describe as describe_isolation
from kernel.supervisor.isolation import per_plugin as plugin_isolation
from kernel.supervisor.limits import check_limits
from kernel.supervisor.logrelay import LogRelay, log_through
from kernel.supervisor.metrics_port import open_metrics
from kernel.supervisor.remote import RemoteJoins, RemoteProcess
from kernel.supervisor.replace import Replacer
from kernel.supervisor.restarts import RestartPolicy
from kernel.supervisor.rollout import RolloutRunner
from kernel.supervisor.sources import SourceWatcher, source_roots
from kernel.supervisor.startup import joins_line, listening_line, metrics_line
from kernel.supervisor.stats import StatsKeeper
from kernel.supervisor.stopping import announce_leaving, before_shutdown, stop_children
from kernel.supervisor.table import PluginRecord, build_table
from kernel.transport.curve import CurveServer
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
        make_logins: LoginMaker | None = None,
        data_paths: DataPaths | None = None,
        drop_logins: Callable[[], Awaitable[None]] | None = None,
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
        self.make_logins = make_logins
        self.drop_logins = drop_logins  # once every child is gone: what lives only while the kernel runs
        self.transport = transport or IpcTransport()
        #: every child's stdout and stderr, and the supervisor's own log, to the kernel's stderr
        self.logs = LogRelay(read_logging_settings(config.current))
        self.launcher = Launcher(
            settings,
            self.transport,
            providers,
            lambda: self.config.current,
            dev=dev,
            prepare_data=prepare_data,
            output=self.logs.pipe,
            data_paths=data_paths,
            config_paths=lambda: self.config.paths,
        )
        self.children: dict[str, Child] = {}
        #: news for the parts that wait on the children (a child ready or gone, a table applied, stopping)
        self.changes = Changes()
        remote = w.remote
        #: ``backend.workers.remote``: workers of other hosts join on the control socket's tcp port
        curve = None
        self.joins: RemoteJoins | None = None
        if remote is not None:
            curve = CurveServer(remote.server_key, remote.allowed_keys, remote.heartbeat_timeout, "supervisor")
            self.joins = RemoteJoins(
                remote, self.launcher, self.plugins, self.children, lambda: self.config.current, self._stop_remote,
                curve.allowed,  # one view of allowedKeys for the handshakes and the joins
            )  # fmt: skip
        self.control = ControlChannel(
            self.launcher.control,
            self.children,
            self._on_ready,
            self.publish,
            self._on_policies,
            on_applied=lambda _child: self.changes.notify(),
            on_rollout=lambda _child, msg: self.rollouts.request(msg),
            curve=curve,
            join=remote.join_endpoint() if remote is not None else "",
            on_join=self.joins.join if self.joins is not None else None,
            on_leave=self._on_leave,
        )
        self.generation = 0
        self._last_table = b""
        self.accepting = True
        #: told to stop, within ``backend.lifecycle.serverShutdownDelay``: readiness 503, requests still served
        self.leaving = False
        self.stopping = False
        self._stop = asyncio.Event()
        self._abort: str | None = None
        self._signal: int | None = None
        self._gateway_deaths = RestartPolicy(w.flapping_limit, w.flapping_window, 0.0, 0.0)
        self.listener: socket.socket | None = None
        self.metrics_listener: socket.socket | None = None
        self.metrics_dir = ""
        self.replacer = Replacer(self, self.changes, grace=w.shutdown_grace, kill_timeout=w.kill_timeout)
        #: operators' rollouts (``kernel rollout``): plugins' workers through the replacer, or the gateways
        self.rollouts = RolloutRunner(
            self,
            self.changes,
            self.replacer,
            grace=w.shutdown_grace,
            kill_timeout=w.kill_timeout,
            start_timeout=w.start_timeout,
        )
        self.stats = StatsKeeper()

    # -- children ------------------------------------------------------------------
    def start_gateway(self, index: int) -> Child:
        assert self.listener is not None
        metrics_fd = self.metrics_listener.fileno() if self.metrics_listener is not None else -1
        child = self.launcher.gateway(index, self.listener.fileno(), metrics_fd)
        self.children[child.ident] = child
        return child

    def start_worker(self, plugin: PluginRecord, slot: int, *, replacing: bool = False) -> Child:
        child = self.launcher.worker(plugin.entry, slot)
        child.replacing = replacing
        self.children[child.ident] = child
        return child

    def _on_ready(self, child: Child, hello: Hello) -> None:
        self.changes.notify()
        if child.kind == "gateway":
            self.control.send(child, self._table())
            self.control.send(child, self.rollouts.message())
            return
        plugin = self.plugins[child.plugin_id]
        plugin.policies = list(hello.policies)
        if not plugin.ever_ready:
            log.info("plugin '%s' is ready (worker pid %d)", plugin.id, hello.pid)
        plugin.ever_ready = True
        plugin.cooldowns = 0
        plugin.restarts.started()
        self.publish()

    def _stop_remote(self, child: Child) -> None:
        """Tell a remote worker to stop (it drains, then joins again): it counts as gone from now."""
        self.control.send(child, Shutdown(0.0))

    def _on_leave(self, child: Child, grace: float) -> None:
        """A remote worker asks to leave (``grace``: out of the tables first, then it drains), or says it
        left, drained (0): gone now, not at its heartbeat timeout."""
        if grace > 0:
            self.replacer.request(child.plugin_id, f"remote worker {child.ident} asks to leave", only=child)
        elif isinstance(child.process, RemoteProcess):
            child.process.left()
            self._reap()

    def _on_policies(self, child: Child, msg: Policies) -> None:
        plugin = self.plugins[child.plugin_id]
        if plugin.policies != msg.policies:
            log.info("plugin '%s' changed its auth policies: %s", plugin.id, _describe(msg.policies) or "none")
            plugin.policies = list(msg.policies)
            self.publish()

    # -- the worker table ------------------------------------------------------------
    def _table(self) -> bytes:
        table = build_table(
            self.generation,
            self.plugins.values(),
            self.children.values(),
            self.failed_at_load,
            self.accepting,
            self.leaving or self.stopping,
        )
        return encode(table)

    def publish(self) -> int:
        """Send gateways a new table after a change; its generation."""
        self.generation += 1
        self._last_table = self._table()
        self._resend()
        return self.generation

    def _resend(self) -> None:
        """Send the current table again (a gateway may have missed it); gateways skip a known one."""
        if self._last_table:
            self.control.broadcast(self._gateways(), self._last_table)

    def send(self, child: Child, msg: Message) -> bool:
        """Send ``msg`` to ``child`` on the control channel; false if it cannot take it now."""
        return self.control.send(child, msg)

    def recycled(self, plugin_id: str) -> None:
        self.stats.recycled(plugin_id)

    def to_gateways(self, msg: Message) -> None:
        self.control.broadcast(self._gateways(), msg)

    async def reload_config(self) -> tuple[str, bool]:
        changed = await self.config.reload()  # a change reaches every process (``_push_config``)
        return self.config.last_error or "", changed

    def _gateways(self) -> list[Child]:
        return [c for c in self.children.values() if c.kind == "gateway"]

    def _push_config(self, config: Config) -> None:
        """A reload changed the config: every running child switches to it, each worker to its own scope."""
        try:
            self.logs.configure(read_logging_settings(config))
        except ConfigError:  # kernel.logs says so, and keeps the logging it has
            pass
        tracing = read_settings(config).tracing  # the reload was validated: it reads
        if tracing != self.settings.tracing:
            log.warning(
                "backend.tracing changed in the config; it is read once per process, at start: restart the "
                "kernel to apply it (docs/operations.md#tracing)"
            )
        children = list(self.children.values())
        self.control.broadcast([c for c in children if c.kind == "gateway"], config_update(config))
        for record in self.plugins.values():
            update = config_update(self.launcher.worker_config(record.entry, config))
            self.control.broadcast(
                [c for c in children if c.kind == "worker" and c.plugin_id == record.entry.id], update
            )

    # -- watching --------------------------------------------------------------------
    def _reap(self) -> None:
        self.launcher.check_zygote()
        for child in list(self.children.values()):
            code = child.process.exit_code()
            if code is not None:
                self._on_exit(child, code)

    def _on_exit(self, child: Child, code: int) -> None:
        child.exit_code = code
        self.children.pop(child.ident, None)
        self.stats.on_exit(child)
        self.changes.notify()
        if self.stopping:
            return
        if child.retiring or child.key:  # replaced and done draining; or remote: it joins again by itself
            if child.key and not child.retiring:
                log.warning("remote worker %s of plugin '%s' is gone (%s)", child.ident, child.plugin_id,
                            "it left" if code == 0 else "cut off")  # fmt: skip
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
        how = (f"signal {-code}" if code < 0 else f"exit code {code}") + self.launcher.resources.death_note(plugin.id)
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

    def _recycle(self, child: Child, why: str) -> None:
        """A worker over a limit: replace it gracefully (a remote one drains, then joins again)."""
        self.replacer.request(child.plugin_id, why, only=child)

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
                check_limits(self.children.values(), self.settings.limits, self._recycle)
                for child in self.joins.revoked() if self.joins is not None else ():
                    child.recycling = True
                    self._recycle(child, f"the key of remote worker {child.ident} left allowedKeys")
                self.control.broadcast(self._gateways(), self.stats.sample(self.children.values(), self.logs.counts()))
            self.logs.summarize()
            beat = encode(Heartbeat(time.time()))  # answers carry it back: the round trip
            for child in list(self.children.values()):
                if child.ready:
                    self.control.send(child, beat)
                limit = w.heartbeat_timeout if child.ready else w.start_timeout
                if child.key and child.ready and w.remote is not None:
                    limit = w.remote.heartbeat_timeout
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
        opened, self.metrics_listener, self.metrics_dir = open_metrics(self.settings.metrics, dev=self.dev)
        if not opened:
            self.control.close()
            self.transport.close()
            self.listener.close()
            return 1
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        loop.add_signal_handler(signal.SIGCHLD, self._reap)
        if not await self._make_logins() or not self.launcher.resources.open():  # no child yet: close what is open
            await self.shutdown()
            return 1
        log_through(self.logs)
        self.launcher.start_zygote()  # importing while the gateways start
        self.config.subscribe(self._push_config)
        await self.config.start()
        for i in range(self.settings.gateway.processes):
            self.start_gateway(i)
        for plugin in self.plugins.values():
            for slot in range(plugin.replicas):
                self.start_worker(plugin, slot)
        for pid, reason in self.failed_at_load.items():
            log.error("plugin '%s' not started: %s", pid, reason)
        log.info("%s", listening_line(self.settings, self.listener, list(self.plugins)))
        if self.joins is not None:
            log.info("%s", joins_line(self.joins))
        log.info("%s", describe_isolation(self.settings, self.config.current, self.plugins, self.launcher))
        for record in self.plugins.values():
            record.isolation = plugin_isolation(self.settings, self.config.current, record.id, self.launcher)
        self.publish()
        if self.metrics_listener is not None:
            log.info("%s", metrics_line(self.settings, self.metrics_listener))
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

    async def _make_logins(self) -> bool:
        """Each plugin's own logins (``make_logins``), before any worker starts; ``False``: they must be
        made and cannot (the reason logged), the kernel does not start."""
        if self.make_logins is None:
            return True
        try:
            self.launcher.logins = await self.make_logins(self.config.current, list(self.plugins))
        except ConfigError as exc:
            log.error("kernel not started: %s", exc)
            return False
        return True

    async def _watch_sources(self) -> None:
        """``--dev``: a plugin whose code changed gets new workers (the others never notice)."""
        roots = {pid: source_roots(p.entry) for pid, p in self.plugins.items()}

        def changed(plugin_id: str, files: list[str]) -> None:
            shown = ", ".join(Path(f).name for f in files[:3]) + (" ..." if len(files) > 3 else "")
            self.replacer.request(plugin_id, f"source changed ({shown})")

        await SourceWatcher(roots, changed).run()

    def _on_signal(self, sig: int) -> None:
        """Stop; with ``backend.lifecycle.serverShutdownDelay``, first leave: readiness 503 while requests
        are still served, so load balancers stop sending traffic before anything is refused. A second
        signal cuts the delay short."""
        delay = self.settings.lifecycle.server_shutdown_delay
        if self._signal is None and delay > 0:
            self._signal = sig
            self.leaving = True
            self.publish()
            announce_leaving(self.settings, sig)
            asyncio.get_running_loop().call_later(delay, self._stop.set)
            return
        if self._signal is None:
            self._signal = sig
        self._stop.set()

    async def shutdown(self) -> None:
        """Before-shutdown hooks while requests still flow; then drain: refuse new requests, let
        in-flight ones finish, stop workers (their shutdown hooks), then force (``kernel.supervisor.stopping``)."""
        self.stopping = True
        self.changes.notify()
        w = self.settings.workers
        grace = 0.0 if self._abort else w.shutdown_grace
        if not self._abort:
            self.publish()  # readiness answers 503 now (load balancers turn away), requests still flow
            await before_shutdown(self.children.values(), self.control, self.changes, w.shutdown_grace)
        self.accepting = False
        self.publish()
        await stop_children(self.children, self.control, self.settings, grace)
        self.launcher.close()
        if self.drop_logins is not None:
            await self.drop_logins()
        self.control.close()
        if self.listener is not None:
            self.listener.close()
        if self.metrics_listener is not None:
            self.metrics_listener.close()
        if self.metrics_dir:
            remove_directory(self.metrics_dir)
        self.transport.close()
        log.info("kernel stopped")
        self.logs.close()
        log_through(sys.stderr)


def _describe(policies: list[AuthPolicy]) -> str:
    return ", ".join(f"{p.path} ({p.allow})" for p in policies)

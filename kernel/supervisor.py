"""The kernel process: starts gateways and plugin workers, watches them, restarts, drains, stops."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field

import msgspec
import zmq

from kernel.gateway.__main__ import GatewaySpec
from kernel.protocol import (
    AuthPolicy,
    Error,
    Heartbeat,
    Hello,
    PluginState,
    PluginStateName,
    ProtocolError,
    Shutdown,
    WorkerTable,
    check_hello,
    decode,
    encode,
)
from kernel.registry import PluginEntry
from kernel.settings import Settings
from kernel.worker.runtime import WorkerSpec
from kernel.zmqio import LoopSocket, ipc, runtime_dir

log = logging.getLogger("kernel")


@dataclass
class Child:
    """A gateway or worker process."""

    ident: str
    kind: str  # "gateway" | "worker"
    proc: subprocess.Popen[bytes]
    plugin_id: str = ""
    slot: int = 0
    ready: bool = False
    unready: str = ""  # the worker's own readiness checks fail
    started: float = field(default_factory=time.monotonic)
    seen: float = field(default_factory=time.monotonic)


@dataclass
class PluginRecord:
    entry: PluginEntry
    replicas: int
    policy: str
    state: PluginStateName = "starting"
    reason: str = ""
    policies: list[AuthPolicy] = field(default_factory=list)
    ever_ready: bool = False
    restarts: deque[float] = field(default_factory=deque)
    backoff: float = 0.0

    @property
    def id(self) -> str:
        return self.entry.id


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        plugins: list[PluginEntry],
        provider_eps: list[str],
        config_paths: list[str],
        *,
        dev: bool = False,
        failed: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.plugins = {p.id: PluginRecord(p, settings.replicas(p.id), settings.boot_policy(p.id)) for p in plugins}
        self.failed_at_load = dict(failed or {})
        self.provider_eps = provider_eps
        self.config_paths = [os.path.abspath(p) for p in config_paths]
        self.dev = dev
        self.run_dir = runtime_dir()
        self.control_endpoint = ipc(self.run_dir, "control")
        self.gateway_endpoints = [ipc(self.run_dir, f"gateway-{i}") for i in range(settings.gateway.processes)]
        self.children: dict[str, Child] = {}
        self.generation = 0
        self._last_table = b""
        self.accepting = True
        self.stopping = False
        self._stop = asyncio.Event()
        self._abort: str | None = None
        self._gen_counter = 0
        self._gateway_deaths: deque[float] = deque()
        self.control: LoopSocket | None = None
        self.listener: socket.socket | None = None

    # -- processes ---------------------------------------------------------------
    def _env(self, key: str, value: bytes) -> dict[str, str]:
        return {**os.environ, key: value.decode(), "KERNEL_PARENT_PID": str(os.getpid())}

    def _spawn(self, module: str, env: dict[str, str], pass_fds: tuple[int, ...] = ()) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", module], env=env, stdin=subprocess.DEVNULL, pass_fds=pass_fds)

    def start_gateway(self, index: int) -> None:
        assert self.listener is not None
        g = self.settings.gateway
        spec = GatewaySpec(
            index=index,
            fd=self.listener.fileno(),
            endpoint=self.gateway_endpoints[index],
            control=self.control_endpoint,
            config_paths=self.config_paths,
            server=g.server,
            mount=g.mount,
            timeout=g.request_timeout,
            max_body=g.max_request_body_size,
            dev=self.dev,
        )
        proc = self._spawn(
            "kernel.gateway", self._env("KERNEL_GATEWAY_SPEC", msgspec.json.encode(spec)), (self.listener.fileno(),)
        )
        ident = f"gateway-{index}"
        self.children[ident] = Child(ident, "gateway", proc, slot=index)

    def start_worker(self, plugin: PluginRecord, slot: int) -> None:
        self._gen_counter += 1
        wid = f"{plugin.id}.{slot}.{self._gen_counter}"
        w = self.settings.workers
        spec = WorkerSpec(
            plugin_id=plugin.id,
            worker_id=wid,
            entry_points=[plugin.entry.entry_point, *self.provider_eps],
            config_paths=self.config_paths,
            control=self.control_endpoint,
            gateways=self.gateway_endpoints,
            mount=self.settings.gateway.mount,
            heartbeat_interval=w.heartbeat_interval,
            heartbeat_timeout=w.heartbeat_timeout,
            dev=self.dev,
            grace=w.shutdown_grace,
        )
        proc = self._spawn("kernel.worker", self._env("KERNEL_WORKER_SPEC", msgspec.json.encode(spec)))
        self.children[wid] = Child(wid, "worker", proc, plugin_id=plugin.id, slot=slot)

    # -- control channel -------------------------------------------------------
    def _on_control(self, frames: list[bytes]) -> None:
        ident = frames[0].decode()
        child = self.children.get(ident)
        try:
            msg = decode(frames[-1])
        except ProtocolError as exc:
            log.error("bad frame from %s: %s", ident, exc)
            return
        if child is None:
            return
        child.seen = time.monotonic()
        if type(msg) is Hello:
            try:
                check_hello(msg)
            except ProtocolError as exc:
                log.error("%s: %s", ident, exc)
                self._send(ident, Error(0, "ProtocolError", str(exc)))
                return
            child.ready = True
            if child.kind == "worker":
                plugin = self.plugins[child.plugin_id]
                plugin.policies = list(msg.policies)
                if not plugin.ever_ready:
                    log.info("plugin '%s' is ready (worker pid %d)", plugin.id, msg.pid)
                plugin.ever_ready = True
                plugin.backoff = 0.0
                self.publish()
            else:
                self._send(ident, self.table())
        elif type(msg) is Heartbeat and msg.reason != child.unready:
            child.unready = msg.reason
            log.warning("worker %s is %s", ident, f"unready ({msg.reason})" if msg.reason else "ready again")
            self.publish()

    def _send(self, ident: str, msg: WorkerTable | Heartbeat | Shutdown | Error) -> None:
        if self.control is None:
            return
        try:
            self.control.send([ident.encode(), encode(msg)])
        except zmq.ZMQError:
            pass

    def table(self) -> WorkerTable:
        states = []
        for p in self.plugins.values():
            mine = [c for c in self.children.values() if c.kind == "worker" and c.plugin_id == p.id]
            workers = [c.ident for c in mine if c.ready and not c.unready]
            detail = {c.ident: _worker_state(c) for c in mine}
            state: PluginStateName = p.state
            reason = p.reason
            if state not in ("failed", "stopping"):
                state = "ready" if len(workers) == p.replicas else ("degraded" if workers else "starting")
                p.state = state
                reason = next((c.unready for c in mine if c.unready), "")
            states.append(
                PluginState(
                    p.id,
                    state,
                    p.policies,
                    workers,
                    reason,
                    p.entry.distribution,
                    p.entry.version,
                    detail,
                )
            )
        for pid, reason in self.failed_at_load.items():
            states.append(PluginState(pid, "failed", [], [], reason))
        return WorkerTable(self.generation, states, self.accepting)

    def publish(self) -> None:
        """Send gateways a new table after a change."""
        self.generation += 1
        self._last_table = encode(self.table())
        self._resend()

    def _resend(self) -> None:
        """Send the current table again (a gateway may have missed it); gateways skip a known one."""
        for c in self.children.values():
            if c.kind == "gateway" and c.ready and self.control is not None and self._last_table:
                try:
                    self.control.send([c.ident.encode(), self._last_table])
                except zmq.ZMQError:
                    pass

    # -- watching ------------------------------------------------------------------
    def _reap(self) -> None:
        for child in list(self.children.values()):
            code = child.proc.poll()
            if code is not None:
                self._on_exit(child, code)

    def _on_exit(self, child: Child, code: int) -> None:
        self.children.pop(child.ident, None)
        if self.stopping:
            return
        if child.kind == "gateway":
            if self._flapping(self._gateway_deaths):
                self._abort = f"gateway {child.slot} keeps dying (last exit code {code}); giving up"
                self._stop.set()
                return
            log.error("gateway %d exited with code %d; restarting", child.slot, code)
            asyncio.get_running_loop().call_later(0.2, self._restart_gateway, child.slot)
            return
        plugin = self.plugins[child.plugin_id]
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        if not plugin.ever_ready and plugin.policy == "abort":
            self._abort = f"plugin '{plugin.id}' (package '{plugin.entry.distribution}') failed to start: worker {how}"
            self._stop.set()
            return
        log.error("worker %s of plugin '%s' died (%s)", child.ident, plugin.id, how)
        window = self.settings.workers.flapping_window
        if self._flapping(plugin.restarts):
            plugin.state = "failed"
            plugin.reason = (
                f"failed: {len(plugin.restarts)} worker deaths within {window:g}s (last: {how}); not restarting"
            )
            log.error("plugin '%s' %s", plugin.id, plugin.reason)
            self.publish()
            return
        w = self.settings.workers
        plugin.backoff = min(w.restart_max_delay, plugin.backoff * 2 if plugin.backoff else w.restart_initial_delay)
        self.publish()
        asyncio.get_running_loop().call_later(plugin.backoff, self._restart_worker, plugin, child.slot)

    def _flapping(self, deaths: deque[float]) -> bool:
        """Record a death; true when there were more than the limit within the window."""
        now = time.monotonic()
        deaths.append(now)
        while deaths and now - deaths[0] > self.settings.workers.flapping_window:
            deaths.popleft()
        return len(deaths) > self.settings.workers.flapping_limit

    def _restart_worker(self, plugin: PluginRecord, slot: int) -> None:
        if not self.stopping and plugin.state != "failed":
            self.start_worker(plugin, slot)

    def _restart_gateway(self, index: int) -> None:
        if not self.stopping:
            self.start_gateway(index)

    async def _watch(self) -> None:
        w = self.settings.workers
        beat = encode(Heartbeat(0.0))
        while True:
            await asyncio.sleep(w.heartbeat_interval)
            self._reap()
            now = time.monotonic()
            for child in list(self.children.values()):
                if self.control is not None and child.ready:
                    try:
                        self.control.send([child.ident.encode(), beat])
                    except zmq.ZMQError:
                        pass
                limit = w.heartbeat_timeout if child.ready else w.start_timeout
                if now - (child.seen if child.ready else child.started) > limit:
                    what = "stopped answering" if child.ready else "did not become ready"
                    log.error("%s %s %s within %.1fs; killing it", child.kind, child.ident, what, limit)
                    child.proc.kill()
            if not self.stopping:
                self._resend()

    # -- main ------------------------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        sock = ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(self.control_endpoint)
        self.control = LoopSocket(sock, self._on_control)
        listen = self.settings.listen
        try:
            self.listener = socket.create_server((listen.host, listen.port), backlog=2048)
        except OSError as exc:
            log.error("cannot listen on %s:%d: %s", listen.host, listen.port, exc.strerror)
            self.control.close()
            shutil.rmtree(self.run_dir, ignore_errors=True)
            return 1
        self.listener.set_inheritable(True)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGCHLD, self._reap)
        for i in range(self.settings.gateway.processes):
            self.start_gateway(i)
        for plugin in self.plugins.values():
            for slot in range(plugin.replicas):
                self.start_worker(plugin, slot)
        for pid, reason in self.failed_at_load.items():
            log.error("plugin '%s' not started: %s", pid, reason)
        log.info(
            "kernel listening on http://%s:%d with %d plugin(s): %s",
            listen.host,
            listen.port,
            len(self.plugins),
            ", ".join(self.plugins) or "none",
        )
        watch = loop.create_task(self._watch())
        await self._stop.wait()
        watch.cancel()
        await self.shutdown()
        if self._abort is not None:
            print(f"kernel: {self._abort}", file=sys.stderr)
            return 1
        return 0

    async def shutdown(self) -> None:
        """Drain: refuse new requests, let in-flight ones finish, stop workers, then force."""
        self.stopping = True
        self.accepting = False
        w = self.settings.workers
        grace = 0.0 if self._abort else w.shutdown_grace
        self.publish()
        gateways = [c for c in self.children.values() if c.kind == "gateway"]
        for c in gateways:
            self._send(c.ident, Shutdown(grace))
        await self._wait_exit(gateways, grace + 2.0)
        workers = [c for c in self.children.values() if c.kind == "worker"]
        for c in workers:
            self._send(c.ident, Shutdown(1.0))
        await self._wait_exit(workers, 2.0)
        remaining = [c for c in self.children.values() if c.proc.poll() is None]
        for c in remaining:
            c.proc.terminate()
        await self._wait_exit(remaining, w.kill_timeout)
        for c in self.children.values():
            if c.proc.poll() is None:
                log.error("%s %s ignored SIGTERM; killing it", c.kind, c.ident)
                c.proc.kill()
                c.proc.wait()
        if self.control is not None:
            self.control.close()
        if self.listener is not None:
            self.listener.close()
        shutil.rmtree(self.run_dir, ignore_errors=True)
        log.info("kernel stopped")

    async def _wait_exit(self, children: list[Child], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(c.proc.poll() is None for c in children):
            await asyncio.sleep(0.05)


def _worker_state(child: Child) -> str:
    if not child.ready:
        return "starting"
    return f"unready: {child.unready}" if child.unready else "ready"


def startup_failure_message(failures: list[str]) -> str:
    lines = ["kernel: cannot start:"]
    lines += [f"  - {f}" for f in failures]
    lines.append("Fix the package, uninstall it, or set backend.startup.plugins.<id>.onPluginBootFailure: continue")
    return "\n".join(lines)

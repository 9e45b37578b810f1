"""The processes the supervisor looks after, and how it launches them.

A ``Child`` is known by its identity on the control channel (``gateway-0``,
``<plugin>.<slot>.<n>``); its ``process`` is how the supervisor sees it die or
makes it stop. Today every child is a local process: one the ``Launcher``
spawned (``LocalProcess``), or a worker the zygote forked as the supervisor's
child (``ForkedProcess``, ``kernel.supervisor.zygote``; ``backend.workers.zygote``);
a worker joining from another host has a handle of its own (``RemoteProcess``,
``kernel.supervisor.remote``) that stops it through the control channel.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from kernel.config import Config
from kernel.config.scoping import plugin_config
from kernel.launch import PARENT_ENV, GatewaySpec, WorkerSpec, hand_spec, launch_of, spawn
from kernel.metrics.files import ENV as METRICS_ENV
from kernel.os_users import DataPreparer, prepare_worker, worker_identity
from kernel.protocol import Heartbeat
from kernel.registry import PluginEntry
from kernel.settings import Settings
from kernel.supervisor.resources import Resources
from kernel.supervisor.sandbox import (
    METRICS_ID_BASE,
    METRICS_ID_ENV,
    SANDBOX_PARENT,
    Sandbox,
    SandboxedProcess,
    config_files,
    import_roots,
)
from kernel.supervisor.zygote import ForkedProcess, Zygote
from kernel.transport.endpoints import Transport
from kernel.zygote import ForkRequest, supported

#: makes each plugin's own logins (``services.database_roles.plugin_logins``), given the config and the
#: plugin ids: per plugin, the config values (dotted path to value) its workers get in place of the kernel's
LoginMaker = Callable[[Any, list[str]], Awaitable[dict[str, dict[str, Any]]]]
#: a plugin's SQLite directories, made if missing: the one the plugins share and its own below it (``None``:
#: no SQLite files), given the config and the plugin id (``services.database_ownership.sqlite_directories``)
DataPaths = Callable[[Any, str], tuple[str, str] | None]


class ChildProcess(Protocol):
    """How the supervisor watches and stops a child, wherever it runs."""

    @property
    def pid(self) -> int: ...

    def exit_code(self) -> int | None:
        """``None`` while it runs; the exit code (negative: the signal) once it ended."""
        ...

    def terminate(self) -> None: ...
    def kill(self) -> None: ...
    def wait(self) -> int: ...


class LocalProcess:
    """A child process of this kernel."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self._proc = proc

    @property
    def pid(self) -> int:
        return self._proc.pid

    def exit_code(self) -> int | None:
        return self._proc.poll()

    def terminate(self) -> None:
        self._proc.terminate()

    def kill(self) -> None:
        self._proc.kill()

    def wait(self) -> int:
        return self._proc.wait()


@dataclass
class Child:
    """A gateway or worker process."""

    ident: str
    kind: Literal["gateway", "worker"]
    process: ChildProcess
    plugin_id: str = ""
    slot: int = 0
    #: what it must say in its Hello: handed over on its stdin, never in its environment or command line
    secret: str = ""
    #: a worker's routing id on the gateways' sockets (its id and a secret part), told only to gateways
    route: str = ""
    #: a remote worker: the Z85 CURVE key it joined with; its every control message must come with it
    key: str = ""
    ready: bool = False
    unready: str = ""  # the worker's own readiness checks fail
    started: float = field(default_factory=time.monotonic)
    seen: float = field(default_factory=time.monotonic)
    #: a worker being replaced (dev reload, rollout), or a gateway being replaced: finishing what it serves
    retiring: bool = False
    #: a worker started to replace others: its failure to start keeps the old ones, never restarts it
    replacing: bool = False
    #: a gateway: the generation of the last worker table it says it routes by
    applied: int = -1
    #: a worker: requests it started (its heartbeats say), and whether a replacement is on its way
    served: int = 0
    recycling: bool = False
    #: a worker: its ``before_shutdown`` hooks ran (it said so) when the kernel began to stop
    before_shutdown_done: bool = False
    #: how it ended, once the supervisor reaped it (negative: the signal)
    exit_code: int | None = None
    #: figures for the operator: wall-clock start, the last periodic heartbeat, the last round trip
    started_at: float = field(default_factory=time.time)
    beat: Heartbeat | None = None
    rtt_ms: float = 0.0

    def state(self) -> str:
        if self.retiring:
            return "draining"
        if not self.ready:
            return "starting"
        return f"unready: {self.unready}" if self.unready else "ready"


class Launcher:
    """Writes the spec of each child (settings, current config, endpoints) and starts it."""

    def __init__(
        self,
        settings: Settings,
        transport: Transport,
        providers: list[str],
        config: Callable[[], Config],
        *,
        dev: bool,
        prepare_data: DataPreparer | None = None,
        output: Callable[[str], int] | None = None,
        data_paths: DataPaths | None = None,
        config_paths: Callable[[], list[str]] = list,
    ) -> None:
        self.settings = settings
        #: what a sandbox shows and hides of the data and the config (``backend.workers.sandbox``)
        self.data_paths = data_paths
        self.config_paths = config_paths
        #: the write end of a new log pipe for a child of a plugin (``kernel.supervisor.logrelay``); none:
        #: children write to the kernel's own stdout and stderr
        self.output = output
        self.prepare_data = prepare_data
        self.providers = providers
        self.config = config
        self.dev = dev
        self.control = transport.endpoint("control")
        self.gateways = [transport.endpoint(f"gateway-{i}") for i in range(settings.gateway.processes)]
        self._started = 0
        #: forks the workers (``backend.workers.zygote``), once ``start_zygote`` started it
        self.zygote = Zygote() if settings.workers.zygote and supported() else None
        #: each plugin's own login, once the supervisor made them (``LoginMaker``): none, the kernel's
        self.logins: dict[str, dict[str, Any]] = {}
        #: each plugin's cgroup (``backend.workers.cgroups``), once the supervisor opened them
        self.resources = Resources(settings)

    def start_zygote(self) -> None:
        """Start the worker zygote, once the kernel's environment is final (it keeps the one it started with)."""
        if self.zygote is not None:
            self.zygote.start((lambda: self._pipe("")) if self.output is not None else None)

    def _pipe(self, plugin_id: str) -> int:
        return self.output(plugin_id) if self.output is not None else -1

    def check_zygote(self) -> None:
        """A dead zygote is replaced (its workers are the supervisor's children: they keep running)."""
        if self.zygote is not None:
            self.zygote.check()

    def close(self) -> None:
        if self.zygote is not None:
            self.zygote.close()
        self.resources.close()  # what is left in the plugins' cgroups killed, the subtree removed

    def gateway(self, index: int, listener_fd: int, metrics_fd: int = -1) -> Child:
        spec = GatewaySpec(
            index=index,
            fd=listener_fd,
            endpoint=self.gateways[index],
            control=self.control,
            settings=self.settings,
            config=self.config().snapshot(),
            providers=self.providers,
            dev=self.dev,
            secret=secrets.token_hex(16),
            metrics_fd=metrics_fd,
        )
        output = self._pipe("")
        try:
            process = LocalProcess(
                spawn(spec, (listener_fd, metrics_fd) if metrics_fd >= 0 else (listener_fd,), output)
            )
        finally:
            if output >= 0:
                os.close(output)
        return Child(spec.name, "gateway", process, slot=index, secret=spec.secret)

    def worker_config(self, plugin: PluginEntry, config: Config) -> Config:
        """What ``plugin``'s workers get of ``config``: its scope (``kernel.config.scoping``), unless turned off."""
        return plugin_config(
            config, plugin, scoped=self.settings.workers.scope_config, login=self.logins.get(plugin.id)
        )

    def spec(
        self,
        plugin: PluginEntry,
        worker_id: str,
        config: Config,
        *,
        control: str = "",
        gateways: list[str] | None = None,
    ) -> WorkerSpec:
        """What worker ``worker_id`` of ``plugin`` is told (a local one on its stdin, a remote one on joining)."""
        return WorkerSpec(
            plugin_id=plugin.id,
            worker_id=worker_id,
            entry_points=[plugin.entry_point, *(m.entry_point for m in plugin.modules), *self.providers],
            control=control or self.control,
            gateways=self.gateways if gateways is None else gateways,
            settings=self.settings,
            config=self.worker_config(plugin, config).snapshot(),
            dev=self.dev,
            secret=secrets.token_hex(16),
            route=f"{worker_id}#{secrets.token_hex(16)}",
        )

    def next_number(self) -> int:
        """A number no other worker of this kernel had (the last part of a worker id)."""
        self._started += 1
        return self._started

    def worker(self, plugin: PluginEntry, slot: int) -> Child:
        worker_id = f"{plugin.id}.{slot}.{self.next_number()}"
        config = self.config()
        who = worker_identity(self.settings.workers, plugin.id)
        if who is not None:  # an OS user of its own: open it the sockets, make its data directory its own
            prepare_worker(who, [self.control, *self.gateways], config, plugin.id, self.prepare_data)
        spec = self.spec(plugin, worker_id, config)
        output = self._pipe(plugin.id)
        try:
            if self.settings.workers.sandboxed(plugin.id):
                process: ChildProcess = self._sandboxed(spec, config, output, self._join(plugin.id))
            else:
                process = self._fork(spec, output) or LocalProcess(
                    spawn(spec, output=output, started=self._join(plugin.id))
                )
        finally:
            if output >= 0:
                os.close(output)
        return Child(spec.name, "worker", process, plugin_id=plugin.id, slot=slot, secret=spec.secret, route=spec.route)

    def _join(self, plugin_id: str) -> Callable[[int], None]:
        return lambda pid: self.resources.join(plugin_id, pid)

    def _sandboxed(
        self, spec: WorkerSpec, config: Config, output: int, started: Callable[[int], None]
    ) -> SandboxedProcess:
        """The worker spawned in a bubblewrap sandbox of its own (``kernel.supervisor.sandbox``)."""
        sockets = [
            os.path.dirname(e.removeprefix("ipc://")) for e in [self.control, *self.gateways] if e.startswith("ipc://")
        ]
        imports = [sys.prefix, *os.environ.get("PYTHONPATH", "").split(os.pathsep), *import_roots(spec.entry_points)]
        readable = [*sockets, *(p for p in imports if p and os.path.isdir(p))]  # any of them may be below /tmp
        writable = [m for m in [os.environ.get(METRICS_ENV)] if m]
        hidden = []
        data = self.data_paths(config, spec.plugin_id) if self.data_paths is not None else None
        if data is not None:
            shared, own = data
            hidden.append(shared)
            writable.append(own)
        sandbox = Sandbox(
            readable=sorted({os.path.abspath(r) for r in readable if r}),
            writable=writable,
            hidden_files=config_files(self.config_paths()),
            hidden_directories=hidden,
            network=self.settings.workers.network(spec.plugin_id),
        )
        metrics_id = METRICS_ID_BASE + self._started
        env = {PARENT_ENV: str(SANDBOX_PARENT), METRICS_ID_ENV: str(metrics_id)}
        return SandboxedProcess(spawn(spec, output=output, wrap=sandbox.argv, env=env, started=started), metrics_id)

    def _fork(self, spec: WorkerSpec, output: int) -> ForkedProcess | None:
        """The worker forked by the zygote, made exactly as ``spawn`` would start it; ``None``: spawn it."""
        if self.zygote is None:
            return None
        how = launch_of(spec)
        who = how.who
        request = ForkRequest(
            env=how.env,
            title="\0".join(how.argv),
            uid=who.uid if who else -1,
            gid=who.gid if who else -1,
            groups=[who.runtime_gid] if who else [],
            umask=how.umask,
        )
        read, write = os.pipe()
        try:
            pid = self.zygote.fork(request, read, output)
        finally:
            os.close(read)
        stdin = os.fdopen(write, "wb")
        if pid is None:
            stdin.close()
            return None
        self.resources.join(spec.plugin_id, pid)  # before its spec: before any plugin code runs
        hand_spec(stdin, spec)  # to the worker alone, never through the zygote
        return ForkedProcess(pid)

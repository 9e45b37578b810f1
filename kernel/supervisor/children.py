"""The processes the supervisor looks after, and how it launches them.

A ``Child`` is known by its identity on the control channel (``gateway-0``,
``<plugin>.<slot>.<n>``); its ``process`` is how the supervisor sees it die or
makes it stop. Today every child is a local process the ``Launcher`` spawned
(``LocalProcess``); a worker joining from another host would bring a handle of
its own that stops it through the control channel.
"""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from kernel.config import Config
from kernel.launch import GatewaySpec, WorkerSpec, spawn
from kernel.os_users import DataPreparer, prepare_worker, worker_identity
from kernel.protocol import Heartbeat
from kernel.registry import PluginEntry
from kernel.settings import Settings
from kernel.transport.endpoints import Transport


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
    ready: bool = False
    unready: str = ""  # the worker's own readiness checks fail
    started: float = field(default_factory=time.monotonic)
    seen: float = field(default_factory=time.monotonic)
    #: a worker being replaced (dev reload): out of the routing, finishing what it serves
    retiring: bool = False
    #: a worker started to replace others: its failure to start keeps the old ones, never restarts it
    replacing: bool = False
    #: a gateway: the generation of the last worker table it says it routes by
    applied: int = -1
    #: a worker: requests it started (its heartbeats say), and whether a replacement is on its way
    served: int = 0
    recycling: bool = False
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
    ) -> None:
        self.settings = settings
        self.prepare_data = prepare_data
        self.providers = providers
        self.config = config
        self.dev = dev
        self.control = transport.endpoint("control")
        self.gateways = [transport.endpoint(f"gateway-{i}") for i in range(settings.gateway.processes)]
        self._started = 0

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
        process = LocalProcess(spawn(spec, (listener_fd, metrics_fd) if metrics_fd >= 0 else (listener_fd,)))
        return Child(spec.name, "gateway", process, slot=index, secret=spec.secret)

    def worker(self, plugin: PluginEntry, slot: int) -> Child:
        self._started += 1
        worker_id = f"{plugin.id}.{slot}.{self._started}"
        config = self.config()
        who = worker_identity(self.settings.workers, plugin.id)
        if who is not None:  # an OS user of its own: open it the sockets, make its data directory its own
            prepare_worker(who, [self.control, *self.gateways], config, plugin.id, self.prepare_data)
        spec = WorkerSpec(
            plugin_id=plugin.id,
            worker_id=worker_id,
            entry_points=[plugin.entry_point, *(m.entry_point for m in plugin.modules), *self.providers],
            control=self.control,
            gateways=self.gateways,
            settings=self.settings,
            config=config.snapshot(),
            dev=self.dev,
            secret=secrets.token_hex(16),
            route=f"{worker_id}#{secrets.token_hex(16)}",
        )
        process = LocalProcess(spawn(spec))
        return Child(spec.name, "worker", process, plugin_id=plugin.id, slot=slot, secret=spec.secret, route=spec.route)

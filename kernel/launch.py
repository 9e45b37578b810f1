"""How the supervisor launches a child process, and the one start-up every child shares.

A child is described by a spec: ``GatewaySpec`` or ``WorkerSpec``, each carrying
the resolved ``Settings`` and the merged config the supervisor loaded and
validated (so no child re-reads or re-defaults anything). ``spawn`` starts
``python -m kernel.gateway|kernel.worker <name>`` and writes the spec, JSON,
to the child's stdin: nothing of it (config values, secrets) sits in the
environment or on the command line, where ``ps`` and other processes see it.
``launch_of`` says how a child starts (environment, OS user, umask), the same
for a worker the zygote forks (``kernel.zygote``): the supervisor hands that one
the read end of its stdin pipe through the zygote, so its spec (its secrets)
goes from the supervisor to it alone, never through the zygote's memory. A child's
stdout and stderr are the write end of a pipe the supervisor reads
(``kernel.supervisor.logrelay``), handed the same way.

``start_child`` is the child's side: orphan protection, SIGINT left to the
supervisor, the spec read from stdin, logging and crash handlers, the event
loop policy.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, TypeVar

import msgspec

from kernel.config import Config, ConfigSnapshot, LiveConfig
from kernel.os_users import GATEWAY_UMASK, WORKER_UMASK, WorkerIdentity, worker_identity
from kernel.protocol import ConfigUpdate
from kernel.settings import Settings

PARENT_ENV = "KERNEL_PARENT_PID"
_PR_SET_PDEATHSIG = 1


class GatewaySpec(msgspec.Struct, frozen=True, tag="gateway"):
    """Gateway number ``index``: serves HTTP on the inherited listener ``fd``, workers connect to ``endpoint``."""

    index: int
    fd: int
    endpoint: str
    control: str
    settings: Settings
    config: ConfigSnapshot
    #: entry points of installed packages implementing hooks (verifiers, root routes)
    providers: list[str]
    dev: bool = False
    #: proves to the supervisor that this process is the gateway it started (read from stdin only)
    secret: str = ""
    #: the inherited listener of the metrics' own port (``backend.metrics.port``), -1: none
    metrics_fd: int = -1

    @property
    def name(self) -> str:
        return f"gateway-{self.index}"


class WorkerSpec(msgspec.Struct, frozen=True, tag="worker"):
    """Worker ``worker_id`` of ``plugin_id``: loads only ``entry_points``, connects to every gateway."""

    plugin_id: str
    worker_id: str
    entry_points: list[str]
    control: str
    gateways: list[str]
    settings: Settings
    config: ConfigSnapshot
    dev: bool = False
    #: proves to the supervisor that this process is the worker it started (read from stdin only)
    secret: str = ""
    #: its routing id on the gateways' sockets: its id and a secret part, so that no other process
    #: can take over its connection (ZeroMQ hands a routing id to whoever connects with it next)
    route: str = ""

    @property
    def name(self) -> str:
        return self.worker_id


ChildSpec = GatewaySpec | WorkerSpec
S = TypeVar("S", GatewaySpec, WorkerSpec)


@dataclass(frozen=True)
class Launch:
    """How a child starts, whoever starts it (``spawn``, or the zygote): its command line, environment,
    OS identity (``None``: the kernel's) and umask (-1: the kernel's)."""

    argv: list[str]
    env: dict[str, str]
    who: WorkerIdentity | None
    umask: int


def launch_of(spec: ChildSpec) -> Launch:
    """A worker whose plugin has an OS user of its own (``kernel.os_users``) runs as that user and group,
    with the runtime group as its one supplementary group and umask 077; gateways then bind their
    socket group-writable (umask 007), for that group."""
    module = "kernel.gateway" if isinstance(spec, GatewaySpec) else "kernel.worker"
    who = worker_identity(spec.settings.workers, spec.plugin_id) if isinstance(spec, WorkerSpec) else None
    env = {**(who.environment() if who else os.environ), PARENT_ENV: str(os.getpid())}
    umask = -1  # the kernel's
    if who is not None:
        umask = WORKER_UMASK
    elif isinstance(spec, GatewaySpec) and spec.settings.workers.runtime_group is not None:
        umask = GATEWAY_UMASK
    return Launch([sys.executable, "-m", module, spec.name], env, who, umask)


def spawn(
    spec: ChildSpec,
    pass_fds: tuple[int, ...] = (),
    output: int = -1,
    *,
    wrap: Callable[[list[str]], list[str]] | None = None,
    env: Mapping[str, str] | None = None,
    started: Callable[[int], None] | None = None,
) -> subprocess.Popen[bytes]:
    """Start the child ``spec`` describes (as ``launch_of`` says) and hand it the spec on its stdin;
    ``output``: the write end of the pipe its stdout and stderr go to (-1: the kernel's own); ``wrap``: the
    command line that runs its own (a sandbox, ``kernel.supervisor.sandbox``), ``env`` added to its environment;
    ``started(pid)``: called before the spec is handed, so before the child runs any plugin code."""
    how = launch_of(spec)
    who = how.who
    proc = subprocess.Popen(
        wrap(how.argv) if wrap is not None else how.argv,
        env={**how.env, **env} if env else how.env,
        stdin=subprocess.PIPE,
        stdout=output if output >= 0 else None,
        stderr=output if output >= 0 else None,
        pass_fds=pass_fds,
        user=who.uid if who else None,
        group=who.gid if who else None,
        extra_groups=[who.runtime_gid] if who else None,
        umask=how.umask,
    )
    assert proc.stdin is not None
    if started is not None:
        started(proc.pid)
    hand_spec(proc.stdin, spec)
    return proc


def hand_spec(pipe: IO[bytes], spec: ChildSpec) -> None:
    """Write ``spec`` to the child's stdin ``pipe`` and close it, never blocking the supervisor's loop."""
    data = msgspec.json.encode(spec)
    if len(data) < 60_000:  # fits the pipe: the write cannot block
        _feed(pipe, data)
    else:  # a big config: do not block the supervisor's loop until the child reads
        threading.Thread(target=_feed, args=(pipe, data), daemon=True).start()


def _feed(pipe: IO[bytes], data: bytes) -> None:
    try:
        pipe.write(data)
        pipe.close()
    except OSError:  # the child died before reading: the supervisor sees its exit
        pass


def start_child(spec_type: type[S]) -> S:
    """The start-up of every child: called first thing by ``kernel.gateway`` and ``kernel.worker``."""
    die_with_parent(int(os.environ[PARENT_ENV]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when we stop
    spec = msgspec.json.decode(sys.stdin.buffer.read(), type=spec_type)
    from kernel.logs import configure, install_crash_handlers
    from kernel.metrics.files import name_files_by_id

    name_files_by_id()  # a sandboxed worker's pid is no name for its metrics files

    configure(os.environ.get("KERNEL_LOG_LEVEL", "info"))
    install_crash_handlers(spec.plugin_id if isinstance(spec, WorkerSpec) else spec.name)
    install_event_loop_policy()
    if spec.settings.tracing.enabled:  # this process's tracer provider, before anything opens a client session
        from kernel.tracing import start_tracing

        if isinstance(spec, WorkerSpec):
            start_tracing(spec.settings.tracing, role="worker", name=spec.name, plugin_id=spec.plugin_id)
        else:
            start_tracing(spec.settings.tracing, role="gateway", name=spec.name)
    return spec


def die_with_parent(expected_parent: int) -> None:
    """Ask Linux to SIGKILL this process when its parent dies (orphan protection)."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except OSError:
            pass
    if os.getppid() != expected_parent:  # the parent died before we asked
        os._exit(1)


def install_event_loop_policy(prefer_uvloop: bool = True) -> None:
    """uvloop when it is installed."""
    if prefer_uvloop:
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass


def config_update(config: Config) -> ConfigUpdate:
    """The message that hands a changed config to a running child."""
    return ConfigUpdate(msgspec.msgpack.encode(config.snapshot()))


def apply_config_update(live: LiveConfig, update: ConfigUpdate) -> None:
    """Switch ``live`` to the config ``update`` carries; its subscribers run in a task of their own."""
    config = Config.from_snapshot(msgspec.msgpack.decode(update.snapshot, type=ConfigSnapshot))
    task = asyncio.get_running_loop().create_task(live.replace(config))
    _updating.add(task)  # keep a reference until it is done
    task.add_done_callback(_updating.discard)


_updating: set[asyncio.Task[bool]] = set()

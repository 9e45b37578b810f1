"""``backend.workers``: how many workers each plugin gets, their heartbeats, restarts, limits and OS user.

A contract module: it imports msgspec, the standard library and ``kernel.settings.base``.
"""

from __future__ import annotations

from typing import Annotated, NamedTuple

import msgspec

from kernel.settings.base import SettingsStruct

__all__ = [
    "OsId",
    "OsUser",
    "PluginLimits",
    "PluginWorkers",
    "RemoteWorkers",
    "WorkerLimits",
    "WorkerSettings",
    "split_address",
]


_NonNegative = Annotated[int, msgspec.Meta(ge=0)]
_Weight = Annotated[int, msgspec.Meta(ge=1, le=10000)]
#: an OS user or group: its name, or its numeric id (a string of digits is an id too)
OsId = str | _NonNegative


class WorkerLimits(SettingsStruct, frozen=True):
    """Limits of each worker of a plugin (``backend.workers.limits``; per plugin under ``plugins.<id>.limits``).

    ``0`` turns a limit off.
    """

    #: resident memory above which a worker is recycled gracefully (a replacement starts, then it drains)
    memory_soft_mb: _NonNegative = 512
    #: resident memory above which a worker is killed at once (then restarted like any dead worker)
    memory_hard_mb: _NonNegative = 1024
    #: requests after which a worker is recycled gracefully
    max_requests: _NonNegative = 0
    #: requests (and WebSockets) one gateway process lets a worker hold at once; more wait in the queue
    max_in_flight: _NonNegative = 1000
    #: requests one gateway process lets wait for a worker with room, per plugin; more get 503 at once
    queue_size: _NonNegative = 100
    #: the CPU all of the plugin's workers (and what they fork) may use, in percent of one core (its
    #: cgroup's `cpu.max`; `backend.workers.cgroups`); 0: no cap
    cpu_percent: _NonNegative = 0
    #: the plugin's share of the CPU when the cores are contended (its cgroup's `cpu.weight`, 1 to 10000):
    #: equal weights, equal shares per plugin however many processes each runs
    cpu_weight: _Weight = 100
    #: processes and threads all of the plugin's workers may have at once (its cgroup's `pids.max`): a
    #: fork bomb gets `EAGAIN`; 0: unbounded
    max_processes: _NonNegative = 512
    #: memory all of the plugin's workers may use, in MB (its cgroup's `memory.max`): above it the OOM
    #: killer ends one of them, which is restarted; unset: `memoryHardMb` times (replicas + 1); 0: unbounded
    memory_max_mb: _NonNegative | None = None


class PluginLimits(SettingsStruct, frozen=True):
    """Per-plugin overrides of ``WorkerLimits``: a key left out follows ``backend.workers.limits``."""

    #: this plugin's `memorySoftMb`
    memory_soft_mb: _NonNegative | None = None
    #: this plugin's `memoryHardMb`
    memory_hard_mb: _NonNegative | None = None
    #: this plugin's `maxRequests`
    max_requests: _NonNegative | None = None
    #: this plugin's `maxInFlight`
    max_in_flight: _NonNegative | None = None
    #: this plugin's `queueSize`
    queue_size: _NonNegative | None = None
    #: this plugin's `cpuPercent`
    cpu_percent: _NonNegative | None = None
    #: this plugin's `cpuWeight`
    cpu_weight: _Weight | None = None
    #: this plugin's `maxProcesses`
    max_processes: _NonNegative | None = None
    #: this plugin's `memoryMaxMb`
    memory_max_mb: _NonNegative | None = None


class PluginWorkers(SettingsStruct, frozen=True):
    #: worker processes of this plugin (unset: `backend.workers.replicas`)
    replicas: int | None = None
    #: the OS user this plugin's workers run as, a name or an id (unset: `backend.workers.user`); a user
    #: other than the kernel's needs the kernel to run as root and `runtimeGroup` (docs/trust-model.md)
    user: OsId | None = None
    #: the OS group they run as (unset: `backend.workers.group` when the user is `backend.workers.user`, else
    #: the user's primary group)
    group: OsId | None = None
    limits: PluginLimits = PluginLimits()
    #: run this plugin's workers in a bubblewrap sandbox (unset: `backend.workers.sandbox`)
    sandbox: bool | None = None
    #: false: a sandboxed worker of this plugin has no network at all, only the kernel's sockets
    network: bool = True


class RemoteWorkers(SettingsStruct, frozen=True):
    """Workers on other hosts joining over ``tcp://`` with CurveZMQ (docs/remote-workers.md); unset: none."""

    #: `host:port` of the supervisor's join port; gateway `i` listens on port+1+i of the same host
    listen: str = "0.0.0.0:7400"
    #: `host:port` remote workers are told to reach the kernel at (gateways: port+1+i); unset: `listen`
    advertise: str | None = None
    #: the kernel's CURVE certificate with its secret key (`kernel keys generate`: `NAME.key_secret`)
    server_key: str = ""
    #: a directory of the public certificates (`*.key`) of the workers allowed to join; re-read on change
    allowed_keys: str = ""
    #: seconds without a heartbeat after which a remote worker counts as gone (its requests go elsewhere)
    heartbeat_timeout: Annotated[float, msgspec.Meta(gt=0)] = 10.0

    def join_endpoint(self) -> str:
        """Where the supervisor binds its join port."""
        host, port = split_address(self.listen)
        return f"tcp://{host}:{port}"

    def gateway_endpoint(self, index: int, *, advertised: bool = False) -> str:
        """Where gateway ``index`` binds its workers' port (``advertised``: where workers reach it)."""
        host, port = split_address(self.advertise or self.listen if advertised else self.listen)
        return f"tcp://{host}:{port + 1 + index}"


def split_address(value: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) as its parts; ``ValueError`` when it is not one."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65535:
        raise ValueError(f"expected host:port, got {value!r}")
    return host, int(port)


class WorkerSettings(SettingsStruct, frozen=True):
    """``backend.workers``."""

    #: worker processes per plugin
    replicas: int = 1
    #: seconds between a worker's heartbeats to the supervisor
    heartbeat_interval: float = 0.5
    #: seconds without a heartbeat after which a worker is killed and replaced
    heartbeat_timeout: float = 5.0
    #: seconds a worker has to become ready after it starts, else it is killed
    start_timeout: float = 30.0
    #: seconds before a dead worker's first restart (doubling at each death)
    restart_initial_delay: float = 0.1
    #: the longest wait, in seconds, before a restart
    restart_max_delay: float = 10.0
    #: more deaths than this within `flappingWindow` and the plugin is stopped as flapping
    flapping_limit: int = 5
    #: seconds over which a plugin's deaths count toward `flappingLimit`
    flapping_window: float = 60.0
    #: seconds a plugin stopped for flapping waits before it is tried again (doubling, up to 16x, until it
    #: is ready again)
    flapping_cooldown: float = 60.0
    #: seconds the requests in flight get to finish when the kernel stops
    shutdown_grace: float = 10.0
    #: seconds a stopping process gets to exit before it is killed
    kill_timeout: float = 5.0
    #: the OS user every plugin's workers run as, a name or an id, unless `plugins.<id>.user` names another
    #: (unset: the kernel's own user)
    user: OsId | None = None
    #: the OS group of the workers that run as `user` (unset: its primary group)
    group: OsId | None = None
    #: the OS group, a name or an id, that lets workers running as another user than the kernel's reach the
    #: kernel's sockets and metrics directory (needed once any `user` is set): those workers get it as their
    #: one supplementary group, so it needs no members; nobody outside it can reach the sockets
    runtime_group: OsId | None = None
    limits: WorkerLimits = WorkerLimits()
    plugins: dict[str, PluginWorkers] = {}
    #: fork workers from a zygote that imported the kernel and its libraries once, so each worker costs
    #: only its own pages and starts faster (Linux); off: each worker is a fresh `python -m kernel.worker`
    zygote: bool = True
    #: each worker gets only the config its plugin may see (its section, what it declares it reads, the
    #: runtime settings without their secrets; `kernel config visible <pluginId>` shows it); false: the
    #: whole config, as the gateways get it
    scope_config: bool = True
    #: a cgroup per plugin bounding its CPU, processes and memory (`limits.cpuPercent`, `cpuWeight`,
    #: `maxProcesses`, `memoryMaxMb`); unset: where the kernel can make them (root, a writable cgroup
    #: tree), said at start-up either way; true: the kernel does not start without them
    cgroups: bool | None = None
    #: the kernel's cgroup subtree is `<cgroupName>-<kernel pid>`, below the kernel's own cgroup
    cgroup_name: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]+$")] = "kernel"
    #: workers on other hosts (`kernel worker --join`): the kernel listens on TCP with CurveZMQ
    remote: RemoteWorkers | None = None
    #: run every plugin's workers in a bubblewrap sandbox (Debian's `bubblewrap`), unless
    #: `plugins.<id>.sandbox` says otherwise: a read-only filesystem without the kernel's config files or the
    #: other plugins' data, a private `/tmp`, a pid namespace of its own (docs/trust-model.md)
    sandbox: bool = False

    def sandboxed(self, plugin_id: str) -> bool:
        """Whether ``plugin_id``'s workers run in a sandbox, as configured."""
        own = self.plugins.get(plugin_id)
        return own.sandbox if own is not None and own.sandbox is not None else self.sandbox

    def network(self, plugin_id: str) -> bool:
        """Whether a sandboxed worker of ``plugin_id`` keeps the network (``plugins.<id>.network``)."""
        own = self.plugins.get(plugin_id)
        return own.network if own is not None else True

    def os_user(self, plugin_id: str) -> OsUser:
        """Who ``plugin_id``'s workers run as, as configured: its own ``user`` (and ``group``), else the
        default ones; with the keys that set them, for messages."""
        own = self.plugins.get(plugin_id) or PluginWorkers()
        mine, defaults = f"backend.workers.plugins.{plugin_id}", "backend.workers"
        if own.user is not None:
            return OsUser(own.user, own.group, f"{mine}.user", f"{mine}.group")
        if own.group is not None:
            return OsUser(self.user, own.group, f"{defaults}.user", f"{mine}.group")
        return OsUser(self.user, self.group, f"{defaults}.user", f"{defaults}.group")


class OsUser(NamedTuple):
    """The OS user and group a plugin's workers run as (``None``: not set), and the keys that say so."""

    user: OsId | None
    group: OsId | None
    user_key: str
    group_key: str

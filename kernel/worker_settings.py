"""``backend.workers``: how many workers each plugin gets, their heartbeats, restarts and limits.

A contract module (part of ``kernel.settings``, the one settings schema; kept apart so that one stays
small): it imports only msgspec and the standard library.
"""

from __future__ import annotations

from typing import Annotated, NamedTuple

import msgspec

__all__ = ["OsId", "OsUser", "PluginLimits", "PluginWorkers", "WorkerLimits", "WorkerSettings"]


class _S(msgspec.Struct, forbid_unknown_fields=True, rename="camel", frozen=True):
    pass


_NonNegative = Annotated[int, msgspec.Meta(ge=0)]
#: an OS user or group: its name, or its numeric id (a string of digits is an id too)
OsId = str | _NonNegative


class WorkerLimits(_S, frozen=True):
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


class PluginLimits(_S, frozen=True):
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


class PluginWorkers(_S, frozen=True):
    #: worker processes of this plugin (unset: `backend.workers.replicas`)
    replicas: int | None = None
    #: the OS user this plugin's workers run as, a name or an id (unset: `backend.workers.user`); a user
    #: other than the kernel's needs the kernel to run as root and `runtimeGroup` (docs/trust-model.md)
    user: OsId | None = None
    #: the OS group they run as (unset: `backend.workers.group` when the user is `backend.workers.user`, else
    #: the user's primary group)
    group: OsId | None = None
    limits: PluginLimits = PluginLimits()


class WorkerSettings(_S, frozen=True):
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

"""Workers under OS users of their own: who they run as, the check at start, what they are given to reach.

``backend.workers.user`` and ``backend.workers.plugins.<id>.user`` (with ``group``) name the OS user a
plugin's workers run as; docs/trust-model.md says what that protects and what it does not.

- ``check_worker_users`` runs once, when ``kernel serve`` starts: every user and group named exists, the
  kernel runs as root (only root starts a process as another user), ``runtimeGroup`` is set, and each
  user can start a worker (the interpreter, the packages and the working directory are readable by it).
  A mistake is a ``ConfigError`` naming the key.
- ``kernel.launch.spawn`` starts such a worker as its ``WorkerIdentity``: that user and group, the runtime
  group as its one supplementary group (none of the kernel's), umask 077, ``HOME``/``USER`` its own.
- Before each such start the supervisor calls ``prepare_worker``: the kernel's sockets and its metrics
  directory are opened to the runtime group (and to nobody else), and the plugin's SQLite directory is
  made the user's own, mode 0700 (``services.database.sqlite_directory``).
"""

from __future__ import annotations

import functools
import grp
import logging
import os
import pwd
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kernel.config import Config
from kernel.errors import ConfigError
from kernel.settings import OsId, WorkerSettings
from kernel.transport.endpoints import share_ipc

log = logging.getLogger("kernel")

#: the umask of a worker under a user of its own: what it creates is its own alone
WORKER_UMASK = 0o077
#: the umask of a gateway when workers run as other users: its socket is open to the runtime group
GATEWAY_UMASK = 0o007
#: the metrics directory when shared: the runtime group may add files (sticky: never remove another's)
METRICS_MODE = 0o1770
_METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # kernel.metrics.files.ENV, without importing prometheus here
#: seconds a user's trial start may take (``import kernel.worker`` as that user)
PROBE_TIMEOUT = 60.0


@dataclass(frozen=True)
class WorkerIdentity:
    """The OS identity a plugin's workers run as, when it is not the kernel's own."""

    uid: int
    gid: int
    #: ``backend.workers.runtimeGroup``: the one supplementary group, to reach the kernel's sockets
    runtime_gid: int
    name: str
    home: str
    #: the key that names the user, for messages
    key: str

    def environment(self) -> dict[str, str]:
        """The worker's environment: the kernel's, with this user's ``HOME``, ``USER`` and ``LOGNAME``."""
        return {**os.environ, "HOME": self.home, "USER": self.name, "LOGNAME": self.name}


def worker_identity(workers: WorkerSettings, plugin_id: str) -> WorkerIdentity | None:
    """Who ``plugin_id``'s workers run as; ``None``: the kernel's own user (none set, or the kernel's).

    Raises ``ConfigError`` naming the key for a user or group that does not exist, a group without a
    user, or a user without ``runtimeGroup``. Lookups are cached: once checked at start, a worker's
    restart never fails on them.
    """
    user, group, user_key, group_key = workers.os_user(plugin_id)
    if user is None:
        if group is not None:
            raise ConfigError(f"Invalid config: {group_key} is set, but no user: set {user_key} too")
        return None
    entry = _user(user)
    if entry is None:
        raise ConfigError(f"Invalid config: {user_key} names OS user '{user}', which does not exist on this machine")
    gid = entry.pw_gid
    if group is not None:
        found = _group(group)
        if found is None:
            raise ConfigError(
                f"Invalid config: {group_key} names OS group '{group}', which does not exist on this machine"
            )
        gid = found.gr_gid
    if entry.pw_uid == os.geteuid() and gid == os.getegid():
        return None  # the kernel's own: nothing to switch
    runtime_gid = _runtime_gid(workers, user_key)
    return WorkerIdentity(entry.pw_uid, gid, runtime_gid, entry.pw_name, entry.pw_dir or "/", user_key)


def _runtime_gid(workers: WorkerSettings, user_key: str) -> int:
    key = "backend.workers.runtimeGroup"
    if workers.runtime_group is None:
        raise ConfigError(
            f"Invalid config: {user_key} runs workers as another OS user, so {key} must name the OS group "
            "that may reach the kernel's sockets: a group of their own (e.g. `groupadd --system kernel-workers`), "
            "given to those workers only; it needs no members"
        )
    found = _group(workers.runtime_group)
    if found is None:
        raise ConfigError(
            f"Invalid config: {key} names OS group '{workers.runtime_group}', which does not exist on this machine"
        )
    return found.gr_gid


@functools.cache
def _user(value: OsId) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwuid(int(value)) if _is_id(value) else pwd.getpwnam(str(value))
    except KeyError:
        return None


@functools.cache
def _group(value: OsId) -> grp.struct_group | None:
    try:
        return grp.getgrgid(int(value)) if _is_id(value) else grp.getgrnam(str(value))
    except KeyError:
        return None


def _is_id(value: OsId) -> bool:
    return isinstance(value, int) or value.isdigit()


# ---------------------------------------------------------------------------- the check at start


def check_worker_users(workers: WorkerSettings, plugin_ids: Iterable[str]) -> None:
    """Every user and group named can be used: a ``ConfigError`` naming the key when not (see the module doc).

    ``plugin_ids``: the installed plugins (``backend.workers.user`` applies to each); the plugins named
    under ``backend.workers.plugins`` are checked too.
    """
    identities: dict[tuple[int, int, int], WorkerIdentity] = {}
    for plugin_id in sorted({"", *plugin_ids, *workers.plugins}):  # "": the defaults, even with no plugin
        who = worker_identity(workers, plugin_id)
        if who is not None:
            identities.setdefault((who.uid, who.gid, who.runtime_gid), who)
    if not identities:
        return
    if os.geteuid() != 0:
        who = next(iter(identities.values()))
        me = _user(os.geteuid())
        raise ConfigError(
            f"Invalid config: {who.key} is '{who.name}', but the kernel runs as "
            f"'{me.pw_name if me else os.geteuid()}', not root: only root can start a process as another "
            f"user. Run the kernel as root, or leave {who.key} unset"
        )
    for who in identities.values():
        problem = _probe(who)
        if problem:
            raise ConfigError(
                f"Invalid config: {who.key}: OS user '{who.name}' cannot start a worker ({problem}); the Python "
                "interpreter, the installed packages and the working directory must be readable by it"
            )


def _probe(who: WorkerIdentity) -> str:
    """Start Python as ``who`` and import the worker's runtime: ``""``, or what went wrong."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", "import kernel.worker"],
            env=who.environment(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=PROBE_TIMEOUT,
            user=who.uid,
            group=who.gid,
            extra_groups=[who.runtime_gid],
            umask=WORKER_UMASK,
        )
    except OSError as exc:  # the interpreter itself cannot be run
        real = os.path.realpath(sys.executable)
        return f"{exc.strerror}: {sys.executable}" + (f" (that is {real})" if real != sys.executable else "")
    except subprocess.TimeoutExpired:
        return f"importing the worker took more than {PROBE_TIMEOUT:g}s"
    if done.returncode == 0:
        return ""
    lines = done.stderr.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else f"exit code {done.returncode}"


# ---------------------------------------------------------------------------- before each start


#: makes a plugin's data its OS user's own before its worker starts (the default database service's
#: SQLite directory: ``services.database_ownership``), handed in by the composition root
DataPreparer = Callable[["WorkerIdentity", Any, str], None]  # (who, the config, plugin id)


def prepare_worker(
    who: WorkerIdentity, endpoints: list[str], config: Config, plugin_id: str, prepare_data: DataPreparer | None = None
) -> None:
    """Before a worker of ``plugin_id`` starts as ``who``: open it the sockets at ``endpoints`` and the
    metrics directory (through the runtime group), and make its SQLite directory its own.

    Never raises: what cannot be done is logged, and the worker then reports what it cannot reach.
    """
    try:
        share_ipc(endpoints, who.runtime_gid)
        metrics = os.environ.get(_METRICS_ENV)
        if metrics:
            os.chown(metrics, -1, who.runtime_gid)
            os.chmod(metrics, METRICS_MODE)
    except OSError as exc:
        log.error("cannot open the kernel's sockets to the workers of plugin '%s' (%s): %s", plugin_id, who.key, exc)
    if prepare_data is not None:
        prepare_data(who, config, plugin_id)

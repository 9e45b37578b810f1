"""The one line ``kernel serve`` logs at start-up: what keeps one plugin from another, and what does not.

Each part names what is in force and, where something is shared or off, says so plainly, so an
operator reads in one line what a bad plugin could reach (``docs/trust-model.md`` has the detail):

- config: scoped per plugin (``backend.workers.scopeConfig``) or the whole config to every worker;
- OS users: how many plugins run as a user of their own (``backend.workers.user``/``plugins.<id>.user``);
- database and cache: whose login each plugin uses;
- resources: the plugins' cgroups (CPU, processes, memory) or why there are none, the memory limits
  the supervisor checks per worker, and that disk is not bounded;
- sandbox: which plugins run in a bubblewrap sandbox (``backend.workers.sandbox``; start-up stops when one
  is asked for and cannot be made, ``kernel.supervisor.sandbox.check_sandbox``).

``describe`` reads settings, raw config and what the launcher made: it starts nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from kernel.config import Config
from kernel.settings import Settings
from kernel.supervisor.resources import Resources

#: the names of ``backend.database.client`` that mean PostgreSQL (``services.database_common._PG``)
PG_CLIENTS = frozenset({"pg", "postgres", "postgresql"})


class Launched(Protocol):
    """What the line reads of the launcher (``kernel.supervisor.children.Launcher``)."""

    #: each plugin's own logins, by plugin id (the dotted config paths its workers get for the kernel's)
    logins: dict[str, dict[str, Any]]
    resources: Resources


def describe(settings: Settings, config: Config, plugin_ids: Iterable[str], launcher: Launched) -> str:
    """The isolation in force for ``plugin_ids``, as one line."""
    logins = launcher.logins
    ids = sorted(plugin_ids)
    workers = settings.workers
    parts = [
        "config scoped per plugin"
        if workers.scope_config
        else "config: the whole config to every worker (scopeConfig off)",
        _os_users(settings, ids),
        _database(config, ids, logins),
        _cache(config, ids, logins),
        _resources(settings, launcher.resources, ids),
        _sandbox(settings, ids),
    ]
    return "isolation: " + "; ".join(parts)


def _os_users(settings: Settings, ids: list[str]) -> str:
    own = [pid for pid in ids if settings.workers.os_user(pid).user is not None]
    if not own:
        return "OS users: none (every worker runs as the kernel's user)"
    if len(own) == len(ids):
        return "OS users: every plugin's own"
    return f"OS users: {len(own)} of {len(ids)} plugins ({', '.join(own)}), the others as the kernel's user"


def _database(config: Config, ids: list[str], logins: Mapping[str, Mapping[str, Any]]) -> str:
    own = [pid for pid in ids if any(path.startswith("backend.database") for path in logins.get(pid, {}))]
    if own:
        shared = "" if len(own) == len(ids) else f", the others the kernel's ({len(ids) - len(own)})"
        return f"database: PostgreSQL, a role of its own for {len(own)} plugin(s){shared}"
    client = config.get_optional("backend.database.client")
    if client in PG_CLIENTS:
        return "database: PostgreSQL, one login shared by every plugin"
    return "database: SQLite, a file per plugin"


def _cache(config: Config, ids: list[str], logins: Mapping[str, Mapping[str, Any]]) -> str:
    store = str(config.get_optional("backend.cache.store") or "memory")
    own = [pid for pid in ids if "backend.cache.connection" in logins.get(pid, {})]
    if store == "redis" and own:
        shared = "" if len(own) == len(ids) else f", the others the kernel's ({len(ids) - len(own)})"
        return f"cache: Redis, a user of its own limited to its keys for {len(own)} plugin(s){shared}"
    if store == "redis":
        return "cache: Redis, one login shared by every plugin"
    return "cache: in each worker's own memory"


def _resources(settings: Settings, resources: Resources, ids: list[str]) -> str:
    limits = settings.workers.limits
    memory = (
        f"memory {limits.memory_soft_mb}/{limits.memory_hard_mb} MB (soft/hard, per worker)"
        if limits.memory_soft_mb or limits.memory_hard_mb
        else "memory unbounded"
    )
    return f"{resources.line(ids)}; {memory}; disk unbounded"


def _sandbox(settings: Settings, ids: list[str]) -> str:
    boxed = [pid for pid in ids if settings.workers.sandboxed(pid)]
    if not boxed:
        return "sandbox: none (backend.workers.sandbox off)"
    offline = [pid for pid in boxed if not settings.workers.network(pid)]
    net = f", without network: {', '.join(offline)}" if offline else ""
    if len(boxed) == len(ids):
        return f"sandbox: bubblewrap for every plugin{net}"
    return f"sandbox: bubblewrap for {len(boxed)} of {len(ids)} plugins ({', '.join(boxed)}){net}"


def per_plugin(settings: Settings, config: Config, plugin_id: str, launcher: Launched) -> dict[str, str]:
    """What keeps ``plugin_id`` apart, for ``kernel status`` and the dashboard: who its workers run as,
    their cgroup, their config, their database and cache logins (names only, never a password)."""
    who = settings.workers.os_user(plugin_id).user
    login = launcher.logins.get(plugin_id, {})
    cgroups = launcher.resources.cgroups
    database = login.get("backend.database.connection")
    cache = login.get("backend.cache.connection")
    store = str(config.get_optional("backend.cache.store") or "memory")
    client = config.get_optional("backend.database.client")
    return {
        "runsAs": f"user {who}" if who is not None else "the kernel's user",
        "cgroup": f"{cgroups.path(plugin_id)}: {launcher.resources.bounds(plugin_id).describe()}"
        if cgroups is not None
        else f"none ({launcher.resources.why})",
        "config": "scoped" if settings.workers.scope_config else "the whole config",
        "database": f"role {_user_of(database)}"
        if database is not None
        else ("the kernel's login" if client in PG_CLIENTS else "SQLite, a file of its own"),
        "cache": f"Redis user {_user_of(cache)}"
        if cache is not None
        else ("Redis, the kernel's login" if store == "redis" else "its own memory"),
    }


def _user_of(connection: Any) -> str:
    """The user name of a connection (a URL or ``{user: ...}``), never its password."""
    if isinstance(connection, dict):
        return str(connection.get("user", ""))
    from urllib.parse import unquote, urlparse

    return unquote(urlparse(str(connection)).username or "")

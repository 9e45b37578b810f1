"""What the database service and its engines share: the settings, outages, the query API.

A leaf: ``services.database`` (the service) and its engines (``services.database_sqlite``,
``services.database_postgres``) import it, and it imports none of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from kernel.api import ConfigReader, Logger, ServiceUnavailableError, merge_config
from kernel_services.outage import Outage, reason

_SQLITE = {"sqlite", "sqlite3", "better-sqlite3"}
_PG = {"pg", "postgres", "postgresql"}


# ----------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class DatabaseSettings:
    """The resolved ``backend.database`` settings of one plugin."""

    client: str  # "sqlite" | "pg"
    connection: Any
    division: str = "database"
    prefix: str = "backstage_plugin_"
    pool_min: int = 1
    pool_max: int = 5
    own_database: str | None = None
    #: its workers run as an OS user of their own, or sandboxed: its SQLite files in a directory of its own
    own_directory: bool = False


def _client(name: Any, where: str) -> str:
    if name in _SQLITE:
        return "sqlite"
    if name in _PG:
        return "pg"
    raise ValueError(f"{where}.client must be 'sqlite' or 'pg', not {name!r}")


def read_settings(config: ConfigReader, plugin_id: str) -> DatabaseSettings:
    """Settings of ``plugin_id``: ``backend.database`` with ``backend.database.plugin.<id>`` on top."""
    base = config.get_optional("backend.database") or {}
    plugins = (base.pop("plugin", None) or {}) if isinstance(base, dict) else {}
    own = (plugins.get(plugin_id) or {}) if isinstance(plugins, dict) else None
    if not isinstance(base, dict) or not isinstance(own, dict):
        raise ValueError(f"backend.database and backend.database.plugin.{plugin_id} must be objects")
    base_client = _client(base.get("client") or "sqlite", "backend.database")
    client = _client(own["client"], f"backend.database.plugin.{plugin_id}") if own.get("client") else base_client
    if client != base_client:
        connection = own.get("connection")
    else:
        connection = (
            merge_config(base.get("connection"), own["connection"]) if "connection" in own else base.get("connection")
        )
    merged = merge_config(base, {k: v for k, v in own.items() if k not in ("client", "connection")})
    pool = merged.get("pool") or {}
    division = merged.get("pluginDivisionMode") or "database"
    if division not in ("database", "schema"):
        raise ValueError(f"backend.database.pluginDivisionMode must be 'database' or 'schema', not {division!r}")
    own_conn = own.get("connection")
    own_db = own_conn.get("database") if isinstance(own_conn, dict) else None
    settings = DatabaseSettings(
        client=client,
        connection=connection,
        division=division,
        prefix=str(merged.get("prefix") or "backstage_plugin_"),
        pool_min=int(pool.get("min", 1)),
        pool_max=int(pool.get("max", 5)),
        own_database=own_db,
        own_directory=_has_own_directory(config, plugin_id),
    )
    if not 0 <= settings.pool_min <= settings.pool_max or settings.pool_max < 1:
        raise ValueError(f"backend.database.pool: need 0 <= min <= max and max >= 1, got {pool!r}")
    return settings


def _has_own_directory(config: Any, plugin_id: str) -> bool:
    """Whether ``plugin_id``'s workers run as an OS user of their own (``backend.workers``' ``user``) or in a
    sandbox (``sandbox``): either way its SQLite files go in a directory of its own."""
    own_sandbox = config.get_optional(f"backend.workers.plugins.{plugin_id}.sandbox")
    return (
        config.get_optional(f"backend.workers.plugins.{plugin_id}.user") is not None
        or config.get_optional("backend.workers.user") is not None
        or bool(own_sandbox if own_sandbox is not None else config.get_optional("backend.workers.sandbox"))
    )


def sqlite_directory(settings: DatabaseSettings, plugin_id: str) -> Path | None:
    """The directory of the plugin's SQLite files (``None``: in memory, or not SQLite).

    A plugin whose workers run as an OS user of their own (``backend.workers.plugins.<id>.user``, or
    ``backend.workers.user``) has a directory of its own, ``<directory>/<pluginId>``: the kernel makes
    it that user's, mode 0700, so no other plugin's user can open its files (``kernel.os_users``).
    """
    conn = settings.connection
    if settings.client != "sqlite" or not (conn is None or isinstance(conn, dict)):
        return None
    directory = Path((conn or {}).get("directory") or "var/data")
    return directory / plugin_id if settings.own_directory else directory


def pg_ident(name: str) -> str:
    """``name`` quoted as a PostgreSQL identifier."""
    if len(name.encode()) > 63:
        raise ValueError(f"PostgreSQL identifier {name!r} is longer than 63 bytes")
    return '"' + name.replace('"', '""') + '"'


def pg_args(connection: Any) -> tuple[dict[str, Any], str | None]:
    """asyncpg connect keyword arguments of a PostgreSQL ``connection``, and the database it names (if any)."""
    if isinstance(connection, str):
        return {"dsn": connection}, urlparse(connection).path.lstrip("/") or None
    if isinstance(connection, dict):
        keys = ("host", "port", "user", "password", "database")
        args = {k: connection[k] for k in keys if connection.get(k) is not None}
        return args, args.get("database")
    raise ValueError("backend.database.connection must be a URL or {host, port, user, password, database}")


# ----------------------------------------------------------------------------- outages


class Unavailable:
    """How an engine reports its database unusable: a ``ServiceUnavailableError`` naming the plugin's
    database and the cause, the outage logged once; ``ok`` after a call that worked ends it."""

    def __init__(self, plugin_id: str, engine: str, logger: Logger) -> None:
        self.plugin_id = plugin_id
        self.what = f"The {engine} database of plugin '{plugin_id}'"
        self._outage = Outage(logger, self.what)

    def error(self, exc: BaseException, problem: str | None = None) -> ServiceUnavailableError:
        """The error for ``exc``; ``problem``: what is wrong (default: unavailable, and why)."""
        problem = problem or f"is unavailable: {reason(exc)}"
        self._outage.failed(exc, "the requests that need it get 503 until it is back", problem.split(":")[0])
        return ServiceUnavailableError(f"{self.what} {problem}", cause=exc, retry_after=1.0)

    def ok(self) -> None:
        self._outage.ok()


# ----------------------------------------------------------------------------- queries


class Queries:
    """The ``Database`` API over one ``_run`` primitive; subclasses bind a pool or a connection."""

    dialect: str

    async def _run(self, op: str, sql: str, params: tuple[Any, ...]) -> Any:
        raise NotImplementedError

    async def _script(self, sql: str) -> None:
        raise NotImplementedError

    async def execute(self, sql: str, *params: Any) -> int:
        """Run a statement; the number of rows it changed (0 when not applicable)."""
        return int(await self._run("execute", sql, params))

    async def fetch_all(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._run("all", sql, params)
        return result

    async def fetch_one(self, sql: str, *params: Any) -> dict[str, Any] | None:
        result: dict[str, Any] | None = await self._run("one", sql, params)
        return result

    async def fetch_val(self, sql: str, *params: Any) -> Any:
        """First column of the first row, or None."""
        return await self._run("val", sql, params)

    def transaction(self) -> Any:
        raise NotImplementedError

"""The database service: one isolated database per plugin, an async query API, migrations.

Queries use PostgreSQL-style positional placeholders on every engine:
``await db.fetch_all("SELECT * FROM t WHERE a = $1 AND b = $2", a, b)``. SQLite
understands ``$1`` natively, so no SQL is rewritten; ``?`` is not supported.
Rows come back as ``dict``s.

Config (``backend.database``; ``backend.database.plugin.<id>`` overrides any of
it for one plugin: with a different ``client`` its ``connection`` replaces the
base one, otherwise object connections deep-merge):

``client``
    ``sqlite`` (default; also ``sqlite3``, ``better-sqlite3``) or ``pg``
    (also ``postgres``, ``postgresql``).
``connection``
    SQLite: ``{directory: <dir>}`` (default ``var/data``, relative to the
    working directory; one ``<pluginId>.sqlite`` file per plugin, WAL,
    ``synchronous=NORMAL``: a commit survives ``kill -9`` of the worker, not a
    power loss; ``<pluginId>.sqlite.lock`` serializes opening the file; a
    plugin whose workers run as an OS user of their own keeps them in
    ``<dir>/<pluginId>/``, that user's alone) or
    ``":memory:"`` (per process, for tests).
    PostgreSQL: a URL string or ``{host, port, user, password, database}``.
``pluginDivisionMode``
    PostgreSQL only. ``database`` (default): database ``<prefix><pluginId>``,
    created if missing (a ``connection.database`` under
    ``plugin.<id>`` names it instead); ``schema``: schema ``<pluginId>`` in the
    configured database, set as each connection's ``search_path``. Schemas
    separate names, not privileges: all plugins share the login.
``prefix``
    Database name prefix in ``database`` mode (default ``backstage_plugin_``).
``pool``
    ``{min: 1, max: 5}`` connections per worker.

When the database cannot be used (the PostgreSQL server went away or refuses connections; the
SQLite file's disk is full, or its directory read-only), a call raises ``ServiceUnavailableError``
naming the plugin's database and the cause: the request gets 503 in the error shape, never a 500,
and the outage is logged once (and once when it is over), not at every call. Nothing needs a
restart: PostgreSQL connections found broken are replaced on the next call, SQLite connections
that saw the file read-only are reopened.

``migrate([(name, sql), ...])`` applies, in order and in one transaction, the
migrations not yet recorded in the plugin's ``kernel_migrations`` table; an SQL
text may hold several statements. Concurrent workers serialize on ``BEGIN
IMMEDIATE`` (SQLite) or ``pg_advisory_xact_lock`` (PostgreSQL), so each
migration runs once. Statements that cannot run in a transaction (``CREATE
INDEX CONCURRENTLY``) are not supported in migrations. When every migration is recorded already,
``migrate`` only reads: a worker starts on a database it cannot write (and serves its reads).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kernel.api import (
    ConfigReader,
    Database,
    DatabaseService,
    Lifecycle,
    Logger,
    PluginMetadata,
    RootConfig,
    ServiceUnavailableError,
    core_services,
    create_service_factory,
    merge_config,
)
from services.logger import plugin_logger
from services.outage import Outage, reason

if TYPE_CHECKING:
    from services.database_postgres import PgDatabase
    from services.database_sqlite import SqliteDatabase

_SQLITE = {"sqlite", "sqlite3", "better-sqlite3"}
_PG = {"pg", "postgres", "postgresql"}
_MIGRATIONS_TABLE = """CREATE TABLE IF NOT EXISTS kernel_migrations (
    name TEXT PRIMARY KEY,
    applied_at TEXT NOT NULL
)"""


class MigrationError(Exception):
    """A migration failed; none of the batch was applied."""


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
    #: its workers run as an OS user of their own: its SQLite files in a directory of its own
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
        own_directory=_has_own_user(config, plugin_id),
    )
    if not 0 <= settings.pool_min <= settings.pool_max or settings.pool_max < 1:
        raise ValueError(f"backend.database.pool: need 0 <= min <= max and max >= 1, got {pool!r}")
    return settings


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


class _Queries:
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


# ----------------------------------------------------------------------------- connecting


async def connect(settings: DatabaseSettings, plugin_id: str, guard: Unavailable) -> SqliteDatabase | PgDatabase:
    """Open the plugin's database as ``settings`` describe, creating it if needed."""
    if settings.client == "sqlite":
        from services.database_sqlite import SqliteDatabase

        conn = settings.connection
        if conn == ":memory:":
            return SqliteDatabase(":memory:", guard=guard)
        if conn is not None and not isinstance(conn, dict):
            raise ValueError("backend.database.connection for sqlite must be ':memory:' or {directory: <dir>}")
        directory = sqlite_directory(settings, plugin_id) or Path("var/data")
        if not directory.is_dir():
            try:
                directory.mkdir(0o700 if settings.own_directory else 0o777, parents=True, exist_ok=True)
            except OSError as exc:
                raise guard.error(exc, f"cannot be created: {reason(exc)}") from exc
        return SqliteDatabase(str(directory / f"{plugin_id}.sqlite"), settings.pool_max, guard=guard)
    from services.database_postgres import connect_postgres  # asyncpg only when PostgreSQL is configured

    return await connect_postgres(settings, plugin_id, guard)


def _has_own_user(config: Any, plugin_id: str) -> bool:
    """Whether ``plugin_id``'s workers run as an OS user of their own (``backend.workers``' ``user``)."""
    return (
        config.get_optional(f"backend.workers.plugins.{plugin_id}.user") is not None
        or config.get_optional("backend.workers.user") is not None
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


# ----------------------------------------------------------------------------- the service


class PluginDatabase:
    """A ``DatabaseService``: the plugin's database, opened on first use."""

    def __init__(self, settings: DatabaseSettings, plugin_id: str, logger: Logger | None = None) -> None:
        self.settings = settings
        self.plugin_id = plugin_id
        self._db: SqliteDatabase | PgDatabase | None = None
        self._lock = asyncio.Lock()
        engine = "SQLite" if settings.client == "sqlite" else "PostgreSQL"
        self._guard = Unavailable(plugin_id, engine, logger or plugin_logger(plugin_id))

    async def get_client(self) -> Database:
        return await self._client()

    async def _client(self) -> SqliteDatabase | PgDatabase:
        async with self._lock:
            if self._db is None:  # a server away now: 503, and the next call tries again
                self._db = await connect(self.settings, self.plugin_id, self._guard)
                self._guard.ok()
            return self._db

    async def migrate(self, migrations: Sequence[tuple[str, str]]) -> list[str]:
        """Apply the migrations not yet recorded, in order; the names applied now."""
        names = [name for name, _ in migrations]
        if len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"plugin '{self.plugin_id}': migration names must be unique, non-empty strings")
        db = await self._client()
        if await _all_recorded(db, names):
            return []
        applied: list[str] = []
        async with db.transaction() as tx:
            await db.lock_migrations(tx)
            await tx.execute(_MIGRATIONS_TABLE)
            done = {row["name"] for row in await tx.fetch_all("SELECT name FROM kernel_migrations")}
            for name, sql in migrations:
                if name in done:
                    continue
                try:
                    await tx._script(sql)
                except Exception as exc:
                    raise MigrationError(f"plugin '{self.plugin_id}': migration {name!r} failed: {exc}") from exc
                now = datetime.now(UTC).isoformat()
                await tx.execute("INSERT INTO kernel_migrations (name, applied_at) VALUES ($1, $2)", name, now)
                applied.append(name)
        return applied

    async def close(self) -> None:
        async with self._lock:
            if self._db is not None:
                await self._db.close()
                self._db = None


async def _all_recorded(db: SqliteDatabase | PgDatabase, names: list[str]) -> bool:
    """Whether every migration is recorded already: a read, no lock (a recorded one is never undone)."""
    try:
        done = {row["name"] for row in await db.fetch_all("SELECT name FROM kernel_migrations")}
    except ServiceUnavailableError:
        raise
    except Exception:  # no table yet
        return False
    return set(names) <= done


def create_database(config: ConfigReader, plugin_id: str, logger: Logger | None = None) -> PluginDatabase:
    """The database service of ``plugin_id`` as ``backend.database`` configures it."""
    return PluginDatabase(read_settings(config, plugin_id), plugin_id, logger)


@create_service_factory(
    core_services.database,
    {
        "config": core_services.root_config,
        "meta": core_services.plugin_metadata,
        "lifecycle": core_services.lifecycle,
        "logger": core_services.logger,
    },
)
def _database(config: RootConfig, meta: PluginMetadata, lifecycle: Lifecycle, logger: Logger) -> DatabaseService:
    service = create_database(config, meta.plugin_id, logger)
    lifecycle.add_shutdown_hook(service.close, label="close database")
    return service


FACTORIES = [_database]

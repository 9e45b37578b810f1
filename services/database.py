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
    configured database, set as each connection's ``search_path``; with
    ``pluginRoles`` each schema is its plugin's role's, closed to the others.
``pluginRoles``
    PostgreSQL only: ``true``, ``false`` or unset (on when the configured
    login may create roles). Each plugin connects as a role of its own, the
    owner of its database or schema, which the others' roles may not open;
    the supervisor makes the roles and hands each worker its own login in
    place of the configured one (``services.database_roles``).
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

The settings, outage reporting and query API this module and its engines share are in
``services.database_common``; an engine (``services.database_sqlite``, ``services.database_postgres``)
is imported when a plugin first connects, so asyncpg only when PostgreSQL is configured.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

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
)
from kernel_services.database_common import DatabaseSettings, Unavailable, read_settings, sqlite_directory
from kernel_services.logger import plugin_logger
from kernel_services.outage import reason

if TYPE_CHECKING:
    from kernel_services.database_postgres import PgDatabase
    from kernel_services.database_sqlite import SqliteDatabase

__all__ = [  # DatabaseSettings, read_settings and sqlite_directory live in services.database_common
    "FACTORIES",
    "DatabaseSettings",
    "MigrationError",
    "PluginDatabase",
    "create_database",
    "read_settings",
    "sqlite_directory",
]
_MIGRATIONS_TABLE = """CREATE TABLE IF NOT EXISTS kernel_migrations (
    name TEXT PRIMARY KEY,
    applied_at TEXT NOT NULL
)"""


class MigrationError(Exception):
    """A migration failed; none of the batch was applied."""


# ----------------------------------------------------------------------------- connecting


async def connect(settings: DatabaseSettings, plugin_id: str, guard: Unavailable) -> SqliteDatabase | PgDatabase:
    """Open the plugin's database as ``settings`` describe, creating it if needed."""
    if settings.client == "sqlite":
        from kernel_services.database_sqlite import SqliteDatabase

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
    from kernel_services.database_postgres import connect_postgres  # asyncpg only when PostgreSQL is configured

    return await connect_postgres(settings, plugin_id, guard)


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

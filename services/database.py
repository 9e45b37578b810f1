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
    power loss; ``<pluginId>.sqlite.lock`` serializes opening the file) or
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

``migrate([(name, sql), ...])`` applies, in order and in one transaction, the
migrations not yet recorded in the plugin's ``kernel_migrations`` table; an SQL
text may hold several statements. Concurrent workers serialize on ``BEGIN
IMMEDIATE`` (SQLite) or ``pg_advisory_xact_lock`` (PostgreSQL), so each
migration runs once. Statements that cannot run in a transaction (``CREATE
INDEX CONCURRENTLY``) are not supported in migrations.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import aiosqlite
import asyncpg  # type: ignore[import-untyped]

from kernel.config import Config
from kernel.core_services import (
    Database,
    DatabaseService,
    Lifecycle,
    PluginMetadata,
    RootConfig,
    core_services,
)
from kernel.service import create_service_factory

T = TypeVar("T")
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


def _client(name: Any, where: str) -> str:
    if name in _SQLITE:
        return "sqlite"
    if name in _PG:
        return "pg"
    raise ValueError(f"{where}.client must be 'sqlite' or 'pg', not {name!r}")


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        return {**base, **{k: _merge(base.get(k), v) for k, v in over.items()}}
    return over if over is not None else base


def read_settings(config: RootConfig | Config, plugin_id: str) -> DatabaseSettings:
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
        connection = _merge(base.get("connection"), own.get("connection"))
    merged = _merge(base, {k: v for k, v in own.items() if k not in ("client", "connection")})
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
    )
    if not 0 <= settings.pool_min <= settings.pool_max or settings.pool_max < 1:
        raise ValueError(f"backend.database.pool: need 0 <= min <= max and max >= 1, got {pool!r}")
    return settings


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


async def _sqlite_run(conn: aiosqlite.Connection, op: str, sql: str, params: tuple[Any, ...]) -> Any:
    args = {str(i): value for i, value in enumerate(params, 1)}
    async with conn.execute(sql, args) as cur:
        if op == "execute":
            return max(cur.rowcount, 0)
        cols = [d[0] for d in cur.description or ()]
        if op == "all":
            return [dict(zip(cols, row)) for row in await cur.fetchall()]
        row = await cur.fetchone()
        if row is None:
            return None
        return dict(zip(cols, row)) if op == "one" else row[0]


def split_sqlite_script(script: str) -> list[str]:
    """Split an SQL script into complete statements (semicolons in strings or triggers are kept)."""
    out: list[str] = []
    current = ""
    for piece in re.split(r"(;)", script):
        current += piece
        if piece == ";" and sqlite3.complete_statement(current):
            if current.strip(" \t\r\n;"):
                out.append(current.strip())
            current = ""
    if current.strip():
        out.append(current.strip())
    return out


class _SqliteConnection(_Queries):
    """A ``Database`` bound to one SQLite connection inside a transaction; nests with savepoints."""

    dialect = "sqlite"

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._depth = 0

    async def _run(self, op: str, sql: str, params: tuple[Any, ...]) -> Any:
        return await _sqlite_run(self._conn, op, sql, params)

    async def _script(self, sql: str) -> None:
        for statement in split_sqlite_script(sql):
            await self._conn.execute(statement)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[_SqliteConnection]:
        self._depth += 1
        name = f"kernel_sp_{self._depth}"
        await self._conn.execute(f"SAVEPOINT {name}")
        try:
            yield self
        except BaseException:
            await self._conn.execute(f"ROLLBACK TO {name}")
            await self._conn.execute(f"RELEASE {name}")
            raise
        else:
            await self._conn.execute(f"RELEASE {name}")
        finally:
            self._depth -= 1


async def _retry_busy(call: Callable[[], Awaitable[T]], limit: float = 30.0) -> T:
    """Retry a statement that SQLite refused as busy without calling its busy handler (it happens
    in WAL mode while other processes open the same file); a refused statement had no effect."""
    deadline, delay = time.monotonic() + limit, 0.005
    while True:
        try:
            return await call()
        except sqlite3.OperationalError as exc:
            if "database is locked" not in str(exc) or time.monotonic() > deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)


@contextlib.asynccontextmanager
async def _file_lock(path: str) -> AsyncIterator[None]:
    """An exclusive ``flock`` on ``path`` across processes; polled, so cancelling never leaks it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(0.005)
        yield
    finally:
        os.close(fd)  # releases the lock


async def _enable_wal(conn: aiosqlite.Connection, path: str) -> None:
    """Switch a file to WAL. Several processes opening a new file at once can see SQLite refuse
    ``BEGIN IMMEDIATE`` without waiting while the mode changes, so openers take turns."""
    if path == ":memory:":
        return
    async with _file_lock(path + ".lock"):
        if await _sqlite_run(conn, "val", "PRAGMA journal_mode", ()) != "wal":
            await conn.execute("PRAGMA journal_mode = WAL")


class SqliteDatabase(_Queries):
    """A small pool of aiosqlite connections to one file (WAL); statements autocommit."""

    dialect = "sqlite"

    def __init__(self, path: str, max_size: int = 5) -> None:
        self.path = path
        self._idle: list[aiosqlite.Connection] = []
        self._all: list[aiosqlite.Connection] = []
        self._slots = asyncio.Semaphore(1 if path == ":memory:" else max_size)

    async def _open(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        self._all.append(conn)  # closed by close(), even if a pragma below fails or is cancelled
        for pragma in ("busy_timeout = 30000", "synchronous = NORMAL", "foreign_keys = ON"):
            await conn.execute(f"PRAGMA {pragma}")
        await _enable_wal(conn, self.path)
        return conn

    @contextlib.asynccontextmanager
    async def _acquire(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._slots:
            conn = self._idle.pop() if self._idle else await self._open()
            try:
                yield conn
            finally:
                self._idle.append(conn)

    async def _run(self, op: str, sql: str, params: tuple[Any, ...]) -> Any:
        async with self._acquire() as conn:
            return await _retry_busy(lambda: _sqlite_run(conn, op, sql, params))

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[_SqliteConnection]:
        """``BEGIN IMMEDIATE``: takes the write lock up front, so concurrent writers wait, not fail."""
        async with self._acquire() as conn:
            try:
                await _retry_busy(lambda: _sqlite_run(conn, "execute", "BEGIN IMMEDIATE", ()))
                yield _SqliteConnection(conn)
            except BaseException:
                # statements run in order on the connection's thread: this follows BEGIN even if
                # the caller was cancelled before BEGIN ran
                with contextlib.suppress(sqlite3.OperationalError):  # no transaction is active
                    await conn.execute("ROLLBACK")
                raise
            else:
                await conn.execute("COMMIT")

    async def lock_migrations(self, tx: _Queries) -> None:
        """Nothing to do: ``BEGIN IMMEDIATE`` already serializes writers across processes."""

    async def close(self) -> None:
        for conn in self._all:
            await conn.close()
        self._all.clear()
        self._idle.clear()


def _pg_status_count(status: str) -> int:
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


async def _pg_run(target: Any, op: str, sql: str, params: tuple[Any, ...]) -> Any:
    if op == "execute":
        return _pg_status_count(await target.execute(sql, *params))
    if op == "all":
        return [dict(r) for r in await target.fetch(sql, *params)]
    if op == "one":
        row = await target.fetchrow(sql, *params)
        return None if row is None else dict(row)
    return await target.fetchval(sql, *params)


class _PgConnection(_Queries):
    """A ``Database`` bound to one asyncpg connection inside a transaction; nests with savepoints."""

    dialect = "postgres"

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def _run(self, op: str, sql: str, params: tuple[Any, ...]) -> Any:
        return await _pg_run(self._conn, op, sql, params)

    async def _script(self, sql: str) -> None:
        await self._conn.execute(sql)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[_PgConnection]:
        async with self._conn.transaction():
            yield self


class PgDatabase(_Queries):
    """An asyncpg pool to the plugin's database (or schema)."""

    dialect = "postgres"

    def __init__(self, pool: Any, lock_scope: str) -> None:
        self._pool = pool
        self._lock_key = advisory_key(f"kernel_migrations:{lock_scope}")

    async def _run(self, op: str, sql: str, params: tuple[Any, ...]) -> Any:
        return await _pg_run(self._pool, op, sql, params)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[_PgConnection]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield _PgConnection(conn)

    async def lock_migrations(self, tx: _Queries) -> None:
        await tx.execute("SELECT pg_advisory_xact_lock($1)", self._lock_key)

    async def close(self) -> None:
        await self._pool.close()


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_*lock``."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


# ----------------------------------------------------------------------------- connecting


def _ident(name: str) -> str:
    if len(name.encode()) > 63:
        raise ValueError(f"PostgreSQL identifier {name!r} is longer than 63 bytes")
    return '"' + name.replace('"', '""') + '"'


def _pg_args(connection: Any) -> tuple[dict[str, Any], str | None]:
    """asyncpg connect keyword arguments, and the database the config names (if any)."""
    if isinstance(connection, str):
        return {"dsn": connection}, urlparse(connection).path.lstrip("/") or None
    if isinstance(connection, dict):
        keys = ("host", "port", "user", "password", "database")
        args = {k: connection[k] for k in keys if connection.get(k) is not None}
        return args, args.get("database")
    raise ValueError("backend.database.connection must be a URL or {host, port, user, password, database}")


async def _ensure_database(args: dict[str, Any], name: str, admin_db: str) -> None:
    """Create database ``name`` unless it exists; safe when several processes race."""
    conn = await asyncpg.connect(**{**args, "database": admin_db})
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", advisory_key(f"kernel_create_db:{name}"))
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            try:
                await conn.execute(f"CREATE DATABASE {_ident(name)}")
            except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
                pass  # created by a process that did not take our lock
    finally:
        await conn.close()


async def _pg_pool(settings: DatabaseSettings, database: str, schema: str | None) -> Any:
    args, configured = _pg_args(settings.connection)
    admin = configured if configured and configured != database else "postgres"
    server_settings = {"search_path": _ident(schema)} if schema else {}

    async def create() -> Any:
        pool = await asyncpg.create_pool(
            **{**args, "database": database},
            min_size=settings.pool_min,
            max_size=settings.pool_max,
            server_settings=server_settings,
        )
        if settings.pool_min == 0:  # nothing connected yet: find out now whether the database exists
            try:
                async with pool.acquire():
                    pass
            except BaseException:
                pool.terminate()
                raise
        return pool

    try:
        return await create()
    except asyncpg.InvalidCatalogNameError:
        await _ensure_database(args, database, admin)
        return await create()


async def connect(settings: DatabaseSettings, plugin_id: str) -> SqliteDatabase | PgDatabase:
    """Open the plugin's database as ``settings`` describe, creating it if needed."""
    if settings.client == "sqlite":
        conn = settings.connection
        if conn == ":memory:":
            return SqliteDatabase(":memory:")
        if conn is not None and not isinstance(conn, dict):
            raise ValueError("backend.database.connection for sqlite must be ':memory:' or {directory: <dir>}")
        directory = Path((conn or {}).get("directory") or "var/data")
        directory.mkdir(parents=True, exist_ok=True)
        return SqliteDatabase(str(directory / f"{plugin_id}.sqlite"), settings.pool_max)
    _, configured = _pg_args(settings.connection)
    if settings.division == "schema":
        database = settings.own_database or configured or "postgres"
        pool = await _pg_pool(settings, database, plugin_id)
        db = PgDatabase(pool, f"{database}.{plugin_id}")
        async with db.transaction() as tx:
            await tx.execute("SELECT pg_advisory_xact_lock($1)", advisory_key(f"kernel_schema:{plugin_id}"))
            await tx.execute(f"CREATE SCHEMA IF NOT EXISTS {_ident(plugin_id)}")
        return db
    database = settings.own_database or settings.prefix + plugin_id
    return PgDatabase(await _pg_pool(settings, database, None), database)


# ----------------------------------------------------------------------------- the service


class PluginDatabase:
    """A ``DatabaseService``: the plugin's database, opened on first use."""

    def __init__(self, settings: DatabaseSettings, plugin_id: str) -> None:
        self.settings = settings
        self.plugin_id = plugin_id
        self._db: SqliteDatabase | PgDatabase | None = None
        self._lock = asyncio.Lock()

    async def get_client(self) -> Database:
        return await self._client()

    async def _client(self) -> SqliteDatabase | PgDatabase:
        async with self._lock:
            if self._db is None:
                self._db = await connect(self.settings, self.plugin_id)
            return self._db

    async def migrate(self, migrations: Sequence[tuple[str, str]]) -> list[str]:
        """Apply the migrations not yet recorded, in order; the names applied now."""
        names = [name for name, _ in migrations]
        if len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"plugin '{self.plugin_id}': migration names must be unique, non-empty strings")
        db = await self._client()
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
                now = datetime.now(timezone.utc).isoformat()
                await tx.execute("INSERT INTO kernel_migrations (name, applied_at) VALUES ($1, $2)", name, now)
                applied.append(name)
        return applied

    async def close(self) -> None:
        async with self._lock:
            if self._db is not None:
                await self._db.close()
                self._db = None


def create_database(config: RootConfig | Config, plugin_id: str) -> PluginDatabase:
    """The database service of ``plugin_id`` as ``backend.database`` configures it."""
    return PluginDatabase(read_settings(config, plugin_id), plugin_id)


@create_service_factory(
    core_services.database,
    {
        "config": core_services.root_config,
        "meta": core_services.plugin_metadata,
        "lifecycle": core_services.lifecycle,
    },
)
def _database(config: RootConfig, meta: PluginMetadata, lifecycle: Lifecycle) -> DatabaseService:
    service = create_database(config, meta.plugin_id)
    lifecycle.add_shutdown_hook(service.close, label="close database")
    return service


FACTORIES = [_database]

"""The PostgreSQL engine of the database service (asyncpg); imported only when configured."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlparse

import asyncpg  # type: ignore[import-untyped]

from services.database import DatabaseSettings, _Queries


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


async def connect_postgres(settings: DatabaseSettings, plugin_id: str) -> PgDatabase:
    """The plugin's PostgreSQL database (or schema), created if missing."""
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

"""The PostgreSQL engine of the database service (asyncpg); imported only when configured.

When the server goes away (refused, reset, shut down, out of connections or disk), every call
raises ``ServiceUnavailableError`` naming the plugin's database (503 in the error shape), and
the outage is logged once. The asyncpg pool drops a connection it finds closed and opens a new
one on the next call, so the plugin recovers by itself once the server is back: no restart.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from kernel_services import instruments
from kernel_services.database_common import DatabaseSettings, Queries, Unavailable, pg_args, pg_ident

#: what asyncpg raises when the server cannot be reached or used (not a mistake in the SQL)
_UNREACHABLE: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable, DNS, timed out (TimeoutError is an OSError)
    asyncpg.PostgresConnectionError,  # class 08: the connection broke
    asyncpg.InsufficientResourcesError,  # class 53: too many connections, disk full, out of memory
    asyncpg.AdminShutdownError,  # 57P01: the server is shutting down
    asyncpg.CrashShutdownError,  # 57P02
    asyncpg.CannotConnectNowError,  # 57P03: the server is starting
)


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` means the server is gone, not that the query was wrong."""
    if isinstance(exc, _UNREACHABLE):
        return True
    return isinstance(exc, asyncpg.InterfaceError) and "connection is closed" in str(exc)


class _OneLine(logging.Filter):
    """asyncpg's pool logs a traceback at each try to reconnect its idle connections while the server
    is down; the outage is logged once by the service, so those lines keep only their cause."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.msg = f"{record.getMessage()} ({type(exc).__name__}: {exc})"
            record.args, record.exc_info, record.exc_text = None, None, None
        return True


_POOL_LOG = logging.getLogger("asyncpg.pool")
if not any(isinstance(f, _OneLine) for f in _POOL_LOG.filters):
    _POOL_LOG.addFilter(_OneLine())


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


@contextlib.asynccontextmanager
async def _guarded(guard: Unavailable) -> AsyncIterator[None]:
    """Turns the server going away into ``ServiceUnavailableError``; other errors pass unchanged."""
    try:
        yield
    except Exception as exc:
        if unreachable(exc):
            raise guard.error(exc) from exc
        raise


@contextlib.asynccontextmanager
async def _transaction(conn: Any, guard: Unavailable) -> AsyncIterator[None]:
    """``conn.transaction()``: the server going away at BEGIN, COMMIT or ROLLBACK is a 503; an error
    the caller's block raised passes unchanged."""
    raised: BaseException | None = None
    try:
        async with conn.transaction():
            try:
                yield
            except BaseException as exc:
                raised = exc
                raise
    except Exception as exc:
        if exc is raised or not unreachable(exc):
            raise
        raise guard.error(exc) from exc


class _PgConnection(Queries):
    """A ``Database`` bound to one asyncpg connection inside a transaction; nests with savepoints."""

    dialect = "postgres"

    def __init__(self, conn: Any, guard: Unavailable) -> None:
        self._conn = conn
        self._guard = guard

    async def _run(self, op: str, sql: str, params: tuple[Any, ...]) -> Any:
        async with _guarded(self._guard):
            return await _pg_run(self._conn, op, sql, params)

    async def _script(self, sql: str) -> None:
        async with _guarded(self._guard):
            await self._conn.execute(sql)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[_PgConnection]:
        async with _transaction(self._conn, self._guard):
            yield self


class PgDatabase(Queries):
    """An asyncpg pool to the plugin's database (or schema)."""

    dialect = "postgres"

    def __init__(self, pool: Any, lock_scope: str, guard: Unavailable) -> None:
        self._pool = pool
        self._lock_key = advisory_key(f"kernel_migrations:{lock_scope}")
        self._guard = guard

    async def _run(self, op: str, sql: str, params: tuple[Any, ...]) -> Any:
        self._pool_use(taking=1)
        try:
            async with _guarded(self._guard):
                result = await _pg_run(self._pool, op, sql, params)
        finally:
            self._pool_use()
        self._guard.ok()
        return result

    def _pool_use(self, taking: int = 0) -> None:
        """``kernel_database_pool_connections``: in use (with the one being taken) and open."""
        size = self._pool.get_size()
        instruments.pool_use(self._guard.plugin_id, min(size - self._pool.get_idle_size() + taking, max(size, 1)), size)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[_PgConnection]:
        raised: BaseException | None = None
        self._pool_use(taking=1)
        try:
            async with self._pool.acquire() as conn, _transaction(conn, self._guard):
                try:
                    yield _PgConnection(conn, self._guard)
                except BaseException as exc:
                    raised = exc
                    raise
        except Exception as exc:  # acquiring or releasing the connection
            if exc is raised or not unreachable(exc):
                raise
            raise self._guard.error(exc) from exc
        finally:
            self._pool_use()
        self._guard.ok()

    async def lock_migrations(self, tx: Queries) -> None:
        await tx.execute("SELECT pg_advisory_xact_lock($1)", self._lock_key)

    async def close(self) -> None:
        await self._pool.close()


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_*lock``."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


async def _ensure_database(args: dict[str, Any], name: str, admin_db: str) -> None:
    """Create database ``name`` unless it exists; safe when several processes race."""
    conn = await asyncpg.connect(**{**args, "database": admin_db})
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", advisory_key(f"kernel_create_db:{name}"))
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            try:
                await conn.execute(f"CREATE DATABASE {pg_ident(name)}")
            except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
                pass  # created by a process that did not take our lock
    finally:
        await conn.close()


async def _pg_pool(settings: DatabaseSettings, database: str, schema: str | None) -> Any:
    args, configured = pg_args(settings.connection)
    admin = configured if configured and configured != database else "postgres"
    server_settings = {"search_path": pg_ident(schema)} if schema else {}

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


async def connect_postgres(settings: DatabaseSettings, plugin_id: str, guard: Unavailable) -> PgDatabase:
    """The plugin's PostgreSQL database (or schema), created if missing; 503 while the server is away."""
    _, configured = pg_args(settings.connection)
    if settings.division == "schema":
        database = settings.own_database or configured or "postgres"
        async with _guarded(guard):
            pool = await _pg_pool(settings, database, plugin_id)
        db = PgDatabase(pool, f"{database}.{plugin_id}", guard)
        try:
            async with db.transaction() as tx:
                await tx.execute("SELECT pg_advisory_xact_lock($1)", advisory_key(f"kernel_schema:{plugin_id}"))
                if not await tx.fetch_val("SELECT 1 FROM pg_namespace WHERE nspname = $1", plugin_id):
                    await tx.execute(f"CREATE SCHEMA {pg_ident(plugin_id)}")  # its own role may not: it has one
        except BaseException:
            pool.terminate()
            raise
        return db
    database = settings.own_database or settings.prefix + plugin_id
    async with _guarded(guard):
        pool = await _pg_pool(settings, database, None)
    return PgDatabase(pool, database, guard)

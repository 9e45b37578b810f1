"""The SQLite engine of the database service: a small aiosqlite pool per plugin file (WAL)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import aiosqlite

from services.database import _Queries

T = TypeVar("T")


async def _sqlite_run(conn: aiosqlite.Connection, op: str, sql: str, params: tuple[Any, ...]) -> Any:
    args = {str(i): value for i, value in enumerate(params, 1)}
    async with conn.execute(sql, args) as cur:
        if op == "execute":
            return max(cur.rowcount, 0)
        cols = [d[0] for d in cur.description or ()]
        if op == "all":
            return [dict(zip(cols, row, strict=False)) for row in await cur.fetchall()]
        row = await cur.fetchone()
        if row is None:
            return None
        return dict(zip(cols, row, strict=False)) if op == "one" else row[0]


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

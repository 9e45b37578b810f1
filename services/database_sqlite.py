"""The SQLite engine of the database service: a small aiosqlite pool per plugin file (WAL).

A file SQLite cannot write (its disk full, its directory read-only, an I/O error) makes the
statement raise ``ServiceUnavailableError`` naming the plugin's database and the cause (503);
reads go on where SQLite can serve them. A connection that found the file read-only stays
read-only in SQLite, so from then on until a write succeeds the pool keeps no connection: each
statement opens its own, and writes succeed again as soon as the directory can be written,
without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import aiosqlite

from kernel_services import instruments
from kernel_services.database_common import Queries, Unavailable
from kernel_services.logger import plugin_logger

#: SQLite's primary result codes that mean the file cannot be used now, not that the SQL is wrong
_FULL, _READONLY, _IOERR, _CANTOPEN = 13, 8, 10, 14
_PROBLEMS = {
    _FULL: "cannot be written: its disk is full",
    _READONLY: "cannot be written: its file or directory is read-only",
    _IOERR: "cannot be used: disk I/O error",
    _CANTOPEN: "cannot be opened",
}


def problem(exc: BaseException) -> str | None:
    """What ``exc`` says is wrong with the file (``None``: not the file's fault)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(exc, sqlite3.Error) and isinstance(code, int) and code & 0xFF in _PROBLEMS:
        name = getattr(exc, "sqlite_errorname", "") or str(code)
        return f"{_PROBLEMS[code & 0xFF]} ({name})"
    if isinstance(exc, OSError) and exc.errno:  # the lock file beside it
        return f"cannot be opened: {os.strerror(exc.errno).lower()}"
    return None


def _stale(exc: BaseException) -> bool:
    """Whether the connections may keep failing after the cause is gone (SQLite keeps a file it
    found read-only read-only for as long as the connection lives)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in (_READONLY, _IOERR, _CANTOPEN)


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


class _SqliteConnection(Queries):
    """A ``Database`` bound to one SQLite connection inside a transaction; nests with savepoints."""

    dialect = "sqlite"

    def __init__(self, conn: aiosqlite.Connection, db: SqliteDatabase) -> None:
        self._conn = conn
        self._db = db
        self._depth = 0

    async def _run(self, op: str, sql: str, params: tuple[Any, ...]) -> Any:
        async with self._db._guarded():
            return await _sqlite_run(self._conn, op, sql, params)

    async def _script(self, sql: str) -> None:
        async with self._db._guarded():
            for statement in split_sqlite_script(sql):
                await self._conn.execute(statement)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[_SqliteConnection]:
        self._depth += 1
        name = f"kernel_sp_{self._depth}"
        try:
            async with self._db._guarded():
                await self._conn.execute(f"SAVEPOINT {name}")
            try:
                yield self
            except BaseException:
                async with self._db._guarded():
                    await self._conn.execute(f"ROLLBACK TO {name}")
                    await self._conn.execute(f"RELEASE {name}")
                raise
            else:
                async with self._db._guarded():
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
    """An exclusive ``flock`` on ``path`` across processes; polled, so cancelling never leaks it.

    In a read-only directory the file is opened for reading (``flock`` needs no more); when it is
    missing there, nobody can write the database either, so there is nothing to serialize."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            yield
            return
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


class SqliteDatabase(Queries):
    """A small pool of aiosqlite connections to one file (WAL); statements autocommit."""

    dialect = "sqlite"

    def __init__(self, path: str, max_size: int = 5, *, guard: Unavailable | None = None) -> None:
        self.path = path
        self._idle: list[aiosqlite.Connection] = []
        self._all: list[aiosqlite.Connection] = []
        self._slots = asyncio.Semaphore(1 if path == ":memory:" else max_size)
        name = os.path.basename(path).removesuffix(".sqlite")
        self._guard = guard or Unavailable(name, "SQLite", plugin_logger(name))
        #: the file was found read-only (or unreadable): no connection is kept until a write succeeds
        self._suspect = False
        self._closing: set[asyncio.Task[None]] = set()

    @contextlib.asynccontextmanager
    async def _guarded(self) -> AsyncIterator[None]:
        """A file SQLite cannot use is a ``ServiceUnavailableError``; other errors pass unchanged."""
        try:
            yield
        except Exception as exc:
            what = problem(exc)
            if what is None:
                raise
            if _stale(exc) and self.path != ":memory:":
                self._suspect = True
                for conn in self._idle:
                    self._drop(conn)
                self._idle.clear()
            raise self._guard.error(exc, what) from exc

    def _written(self) -> None:
        """A write succeeded: the file is usable, connections may be kept again."""
        self._suspect = False
        self._guard.ok()

    async def _open(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        self._all.append(conn)  # closed by close(), even if a pragma below is cancelled
        try:
            for pragma in ("busy_timeout = 30000", "synchronous = NORMAL", "foreign_keys = ON"):
                await conn.execute(f"PRAGMA {pragma}")
            await _enable_wal(conn, self.path)
        except Exception:  # a file that cannot be used: no connection left behind at each try
            self._all.remove(conn)
            await _close_quietly(conn)
            raise
        return conn

    @contextlib.asynccontextmanager
    async def _acquire(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._slots:
            async with self._guarded():
                conn = self._idle.pop() if self._idle else await self._open()
            self._pool_use()
            try:
                yield conn
            finally:
                self._release(conn)
                self._pool_use()

    def _pool_use(self) -> None:
        """``kernel_database_pool_connections``: in use and open."""
        instruments.pool_use(self._guard.plugin_id, len(self._all) - len(self._idle), len(self._all))

    def _release(self, conn: aiosqlite.Connection) -> None:
        if self._suspect:
            self._drop(conn)
        else:
            self._idle.append(conn)

    def _drop(self, conn: aiosqlite.Connection) -> None:
        if conn in self._all:
            self._all.remove(conn)
            task = asyncio.get_running_loop().create_task(_close_quietly(conn))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _run(self, op: str, sql: str, params: tuple[Any, ...]) -> Any:
        async with self._acquire() as conn, self._guarded():
            result = await _retry_busy(lambda: _sqlite_run(conn, op, sql, params))
        if op == "execute":  # reads can go on while writes fail: a write ends an outage
            self._written()
        return result

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[_SqliteConnection]:
        """``BEGIN IMMEDIATE``: takes the write lock up front, so concurrent writers wait, not fail."""
        async with self._acquire() as conn:
            try:
                async with self._guarded():
                    await _retry_busy(lambda: _sqlite_run(conn, "execute", "BEGIN IMMEDIATE", ()))
                yield _SqliteConnection(conn, self)
                async with self._guarded():
                    await conn.execute("COMMIT")  # a COMMIT that failed (disk full) is rolled back below
            except BaseException:
                # statements run in order on the connection's thread: this follows BEGIN even if
                # the caller was cancelled before BEGIN ran
                with contextlib.suppress(sqlite3.OperationalError):  # no transaction is active
                    await conn.execute("ROLLBACK")
                raise
        self._written()

    async def lock_migrations(self, tx: Queries) -> None:
        """Nothing to do: ``BEGIN IMMEDIATE`` already serializes writers across processes."""

    async def close(self) -> None:
        await asyncio.gather(*self._closing)
        for conn in self._all:
            await _close_quietly(conn)
        self._all.clear()
        self._idle.clear()


async def _close_quietly(conn: aiosqlite.Connection) -> None:
    """Close a connection; one whose file cannot be written may fail to checkpoint, and that is fine."""
    with contextlib.suppress(sqlite3.Error):
        await conn.close()

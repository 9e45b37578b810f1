"""Fixtures for the cache, database and scheduler suites: real PostgreSQL and Redis, unique names per run."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
import pytest
import redis

from kernel.config import Config
from kernel.testing import KernelProcess

RUN = uuid.uuid4().hex[:8]
PG_HOST = "127.0.0.1"
PG_ADMIN_DSN = f"postgresql://postgres@{PG_HOST}:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
REDIS_PREFIX = f"kt:{RUN}:"
TOKEN = "services-suite-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DB_ENGINES = ["sqlite", "pg-database", "pg-schema"]
_names = itertools.count()


def unique_name() -> str:
    """A PostgreSQL database name (or prefix) no other test or run uses; dropped at session end."""
    return f"kt_{RUN}_{next(_names)}"


def database_config(engine: str, tmp_path: Path) -> dict[str, Any]:
    """``backend.database`` for ``engine``: sqlite, pg-database or pg-schema (fresh names each call)."""
    if engine == "sqlite":
        return {"client": "sqlite", "connection": {"directory": str(tmp_path / f"data-{next(_names)}")}}
    name = unique_name()
    if engine == "pg-database":
        return {"client": "pg", "connection": PG_ADMIN_DSN, "prefix": name + "_"}
    assert engine == "pg-schema", engine
    return {
        "client": "pg",
        "connection": {"host": PG_HOST, "port": 5432, "user": "postgres", "database": name},
        "pluginDivisionMode": "schema",
    }


def config_of(**backend: Any) -> Config:
    return Config.from_dict({"backend": backend})


def kernel_config(**backend: Any) -> dict[str, Any]:
    """A config for ``KernelProcess``: fast heartbeats, a static token for protected routes."""
    base: dict[str, Any] = {
        "workers": {"heartbeatInterval": 0.2, "heartbeatTimeout": 3, "restartInitialDelay": 0.05},
        "auth": {"externalAccess": [{"type": "static", "options": {"token": TOKEN, "subject": "tests"}}]},
    }
    base.update(backend)
    return {"backend": base}


def wait_for(check: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy; its last result."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except (httpx.HTTPError, OSError):
            result = None
        if result:
            return result
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(interval)


def worker_pids(kernel: KernelProcess) -> list[int]:
    """Pids of the kernel's worker processes."""
    assert kernel.proc is not None
    return [
        c.pid
        for c in psutil.Process(kernel.proc.pid).children()
        if any("kernel.worker" in part for part in c.cmdline())
    ]


async def pg_fetch(database: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(host=PG_HOST, user="postgres", database=database)
    try:
        return [dict(r) for r in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


async def _drop_run_databases() -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        rows = await conn.fetch("SELECT datname FROM pg_database WHERE datname LIKE $1", f"kt\\_{RUN}\\_%")
        for row in rows:
            await conn.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)')
        # the plugins' roles (services.database_roles), once the databases they own are gone
        for row in await conn.fetch("SELECT rolname FROM pg_roles WHERE rolname LIKE $1", f"kt\\_{RUN}\\_%"):
            await conn.execute(f'DROP ROLE IF EXISTS "{row["rolname"]}"')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def engines_cleanup() -> Iterator[None]:
    """Drop this run's databases and Redis keys when the session ends (``usefixtures`` it)."""
    yield
    asyncio.run(_drop_run_databases())
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=REDIS_PREFIX + "*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()

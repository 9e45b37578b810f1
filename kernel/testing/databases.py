"""``TestDatabases`` and ``TestCaches``: a fresh database or cache per test, on every engine the kernel supports.

As Backstage's ``TestDatabases.create()`` / ``TestCaches.create()``: ``await databases.init("postgres")``
gives a database nothing else uses, dropped by ``close()``. The pytest plugin wraps them as the
fixtures ``test_database`` (parametrized over ``sqlite`` and ``postgres``) and ``test_cache``
(``memory`` and ``redis``). Where the engines are:

- PostgreSQL: ``KERNEL_TEST_POSTGRES_URL`` (a connection string to a database of a role that may
  ``CREATE DATABASE``), else ``postgresql://postgres:root@127.0.0.1:5432/test``; each test gets a
  database ``kernel_test_<random>``, dropped after it. Unreachable: the test is skipped, saying where
  it looked and how to point it elsewhere.
- Redis: ``KERNEL_TEST_REDIS_URL``, else ``redis://127.0.0.1:6379/0``; each test gets a key prefix
  ``kernel-test:<random>:`` whose keys are deleted after it.

A ``TestDatabase`` is the real database service on that engine: ``await db.client()`` (queries),
``db.service`` (a ``DatabaseService``), ``db.factory()`` (it, for every plugin of a test backend),
``db.config`` (``backend.database`` for a real kernel, ``mode="process"``). A ``TestCache`` likewise:
``cache.cache(plugin_id)``, ``cache.factory()``, ``cache.config``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn
from urllib.parse import urlsplit, urlunsplit

import pytest

from kernel.api import Database, PluginMetadata, ServiceFactory, core_services
from kernel.testing.fakes import TOOLKIT, instance_factory
from kernel_services.cache import CacheStore, MemoryStore, PluginCache, RedisStore
from kernel_services.database import DatabaseSettings, PluginDatabase

__all__ = ["CACHE_STORES", "DATABASE_ENGINES", "TestCache", "TestCaches", "TestDatabase", "TestDatabases"]

DATABASE_ENGINES = ("sqlite", "postgres")
CACHE_STORES = ("memory", "redis")
POSTGRES_ENV = "KERNEL_TEST_POSTGRES_URL"
REDIS_ENV = "KERNEL_TEST_REDIS_URL"
DEFAULT_POSTGRES_URL = "postgresql://postgres:root@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
#: engines found unreachable in this process: later tests skip at once instead of waiting again
_UNREACHABLE: dict[str, str] = {}


def _unreachable(engine: str, where: str, env: str, exc: BaseException) -> NoReturn:
    _UNREACHABLE[engine] = (
        f"{engine} is unreachable at {where} ({type(exc).__name__}: {exc}); set {env} to a reachable server"
    )
    pytest.skip(_UNREACHABLE[engine])


def _hide_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))


@dataclass
class TestDatabase:
    """A fresh database: see the module doc."""

    __test__ = False
    engine: Literal["sqlite", "postgres"]
    service: PluginDatabase
    config: dict[str, Any]
    name: str = ""

    async def client(self) -> Database:
        return await self.service.get_client()

    def factory(self) -> ServiceFactory:
        """This database for every plugin of a test backend (Backstage's ``mockServices.database.factory({knex})``)."""
        return instance_factory(core_services.database, self.service)


@dataclass
class TestDatabases:
    """Fresh databases for one test; ``close()`` drops them (Backstage's ``TestDatabases``)."""

    __test__ = False
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="kernel-test-db-")))
    created: list[TestDatabase] = field(default_factory=list)

    @staticmethod
    def each_supported_id() -> tuple[str, ...]:
        return DATABASE_ENGINES

    async def init(self, engine: str) -> TestDatabase:
        """A fresh database on ``engine`` (``sqlite`` or ``postgres``); skips the test if it is unreachable."""
        if engine == "sqlite":
            directory = self.directory / f"sqlite-{uuid.uuid4().hex[:8]}"
            config: dict[str, Any] = {"client": "sqlite", "connection": {"directory": str(directory)}}
            db = TestDatabase(
                "sqlite", PluginDatabase(DatabaseSettings("sqlite", config["connection"]), "test"), config
            )
        elif engine == "postgres":
            db = await self._postgres()
        else:
            raise ValueError(f"unknown database engine {engine!r}: one of {DATABASE_ENGINES}")
        self.created.append(db)
        return db

    async def _postgres(self) -> TestDatabase:
        import asyncpg  # type: ignore[import-untyped]

        if "postgres" in _UNREACHABLE:
            pytest.skip(_UNREACHABLE["postgres"])
        admin_url = os.environ.get(POSTGRES_ENV) or DEFAULT_POSTGRES_URL
        name = f"kernel_test_{uuid.uuid4().hex[:12]}"
        try:
            conn = await asyncpg.connect(admin_url, timeout=3)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            _unreachable("postgres", _hide_password(admin_url), POSTGRES_ENV, exc)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        url = urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))
        # one schema per plugin inside the fresh database (a real kernel: everything goes with it)
        config = {"client": "pg", "connection": url, "pluginDivisionMode": "schema"}
        settings = DatabaseSettings("pg", url, own_database=name, pool_min=0, pool_max=5)
        return TestDatabase("postgres", PluginDatabase(settings, "test"), config, name)

    async def close(self) -> None:
        """Close every database and drop the PostgreSQL ones."""
        names = [db.name for db in self.created if db.engine == "postgres"]
        for db in self.created:
            await db.service.close()
        self.created.clear()
        shutil.rmtree(self.directory, ignore_errors=True)
        if names:
            import asyncpg

            conn = await asyncpg.connect(os.environ.get(POSTGRES_ENV) or DEFAULT_POSTGRES_URL, timeout=3)
            try:
                for name in names:
                    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await conn.close()


@dataclass
class TestCache:
    """A fresh cache: see the module doc."""

    __test__ = False
    store_kind: Literal["memory", "redis"]
    store: CacheStore
    config: dict[str, Any]

    def cache(self, plugin_id: str = "test") -> PluginCache:
        """The cache of ``plugin_id`` on this store (keys ``<prefix><pluginId>:<key>``, as a real kernel's)."""
        return PluginCache(self.store, plugin_id)

    def factory(self) -> ServiceFactory:
        """This store for every plugin of a test backend, each plugin in its own namespace."""

        def make(meta: PluginMetadata) -> PluginCache:
            return self.cache(meta.plugin_id)

        return ServiceFactory(core_services.cache, make, {"meta": core_services.plugin_metadata}, TOOLKIT)


@dataclass
class TestCaches:
    """Fresh caches for one test; ``close()`` empties them (Backstage's ``TestCaches``)."""

    __test__ = False
    created: list[TestCache] = field(default_factory=list)
    _prefixes: list[str] = field(default_factory=list)

    @staticmethod
    def each_supported_id() -> tuple[str, ...]:
        return CACHE_STORES

    async def init(self, store: str) -> TestCache:
        """A fresh cache on ``store`` (``memory`` or ``redis``); skips the test if Redis is unreachable."""
        if store == "memory":
            cache = TestCache("memory", MemoryStore(), {"store": "memory"})
        elif store == "redis":
            cache = await self._redis()
        else:
            raise ValueError(f"unknown cache store {store!r}: one of {CACHE_STORES}")
        self.created.append(cache)
        return cache

    async def _redis(self) -> TestCache:
        import redis.asyncio as aredis

        if "redis" in _UNREACHABLE:
            pytest.skip(_UNREACHABLE["redis"])
        url = os.environ.get(REDIS_ENV) or DEFAULT_REDIS_URL
        client = aredis.Redis.from_url(url, socket_connect_timeout=3)
        try:
            await client.ping()
        except (OSError, aredis.RedisError) as exc:
            _unreachable("redis", _hide_password(url), REDIS_ENV, exc)
        finally:
            await client.aclose()
        prefix = f"kernel-test:{uuid.uuid4().hex[:12]}:"
        self._prefixes.append(prefix)
        config = {"store": "redis", "connection": url, "keyPrefix": prefix}
        return TestCache("redis", RedisStore(url, prefix), config)

    async def close(self) -> None:
        """Close every store and delete the keys written under this test's Redis prefixes."""
        for cache in self.created:
            await cache.store.close()
        self.created.clear()
        if self._prefixes:
            import redis.asyncio as aredis

            client = aredis.Redis.from_url(os.environ.get(REDIS_ENV) or DEFAULT_REDIS_URL)
            try:
                for prefix in self._prefixes:
                    keys = [key async for key in client.scan_iter(match=prefix + "*")]
                    if keys:
                        await client.delete(*keys)
            finally:
                await client.aclose()
            self._prefixes.clear()

"""The ``test_database`` / ``test_cache`` fixtures (the kernel's pytest plugin) on every engine."""

from __future__ import annotations

import asyncpg
import pytest
import redis.asyncio as aredis

from kernel.testing import TestCache, TestCaches, TestDatabase, TestDatabases, mock_credentials, start_test_backend
from kernel.testing import databases as databases_module
from kernel.testing.databases import DEFAULT_POSTGRES_URL, DEFAULT_REDIS_URL
from tests.testing import notes

USER = mock_credentials.user.header()


async def test_each_test_gets_a_fresh_database(test_database: TestDatabase) -> None:
    db = await test_database.client()
    assert db.dialect == {"sqlite": "sqlite", "postgres": "postgres"}[test_database.engine]
    assert await test_database.service.migrate(notes.MIGRATIONS) == ["001_notes"]  # nobody made it before
    await db.execute("INSERT INTO notes (id, owner, body) VALUES ($1, $2, $3)", "1", "me", "hello")
    assert await db.fetch_all("SELECT body FROM notes") == [{"body": "hello"}]


async def test_a_test_database_behind_a_backend(test_database: TestDatabase) -> None:
    async with start_test_backend([notes.plugin], services=[test_database]) as backend:
        created = await backend.client.post("/api/notes/notes", json={"body": "persisted"}, headers=USER)
        assert created.status_code == 201, created.text
    db = await test_database.client()  # what the plugin wrote, read directly
    assert await db.fetch_val("SELECT body FROM notes WHERE owner = $1", "user:default/mock") == "persisted"


async def test_postgres_databases_are_dropped_after_the_test() -> None:
    databases = TestDatabases()
    db = await databases.init("postgres")
    assert db.name.startswith("kernel_test_") and db.config["pluginDivisionMode"] == "schema"
    await (await db.client()).execute("CREATE TABLE t (x INT)")
    await databases.close()
    conn = await asyncpg.connect(DEFAULT_POSTGRES_URL)
    try:
        assert await conn.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", db.name) == 0
    finally:
        await conn.close()


async def test_an_unreachable_postgres_skips_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KERNEL_TEST_POSTGRES_URL", "postgresql://postgres:pw@127.0.0.1:1/test")
    monkeypatch.setattr(databases_module, "_UNREACHABLE", {})
    with pytest.raises(pytest.skip.Exception, match=r"postgres is unreachable at postgresql://postgres:\*\*\*@127"):
        await TestDatabases().init("postgres")
    with pytest.raises(pytest.skip.Exception, match="set KERNEL_TEST_POSTGRES_URL"):  # remembered: no second wait
        await TestDatabases().init("postgres")
    with pytest.raises(ValueError, match="unknown database engine"):
        await TestDatabases().init("mysql")


@pytest.mark.parametrize("test_database", ["sqlite"], indirect=True)
async def test_one_engine_only(test_database: TestDatabase) -> None:
    assert test_database.engine == "sqlite" and test_database.config["client"] == "sqlite"


async def test_each_test_gets_a_fresh_cache(test_cache: TestCache) -> None:
    cache = test_cache.cache("notes")
    assert await cache.get("k") is None
    await cache.set("k", {"v": [1, 2]})
    assert await cache.get("k") == {"v": [1, 2]}
    assert await test_cache.cache("other").get("k") is None  # each plugin its own namespace


async def test_a_test_cache_behind_a_backend(test_cache: TestCache) -> None:
    async with start_test_backend([notes.plugin], services=[test_cache.factory()]) as backend:
        await backend.client.post("/api/notes/notes", json={"body": "a"}, headers=USER)
        assert (await backend.client.get("/api/notes/notes", headers=USER)).json() == {"notes": ["a"]}
    assert await test_cache.cache("notes").get("notes:user:default/mock") == ["a"]


async def test_redis_keys_are_deleted_after_the_test() -> None:
    caches = TestCaches()
    cache = await caches.init("redis")
    await cache.cache().set("k", 1)
    prefix = cache.config["keyPrefix"]
    client = aredis.Redis.from_url(DEFAULT_REDIS_URL)
    try:
        assert [k async for k in client.scan_iter(match=prefix + "*")] == [f"{prefix}test:k".encode()]
        await caches.close()
        assert [k async for k in client.scan_iter(match=prefix + "*")] == []
    finally:
        await client.aclose()

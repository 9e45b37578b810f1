"""kernel_services.database: one suite on SQLite, PostgreSQL (database mode) and PostgreSQL (schema mode)."""

from __future__ import annotations

import asyncio
import functools
import operator
import os
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from kernel.testing import KernelProcess, make_package
from kernel_services.database import MigrationError, PluginDatabase, create_database, read_settings
from kernel_services.database_sqlite import split_sqlite_script
from tests.services.conftest import (
    AUTH,
    DB_ENGINES,
    PG_ADMIN_DSN,
    config_of,
    database_config,
    kernel_config,
    wait_for,
)

pytestmark = pytest.mark.usefixtures("engines_cleanup")

OpenDb = Callable[[str], PluginDatabase]


@pytest.fixture(params=DB_ENGINES)
async def open_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[OpenDb]:
    """Opens plugin databases on one engine configuration; closes them after the test."""
    config = config_of(database=database_config(request.param, tmp_path))
    opened: list[PluginDatabase] = []

    def open_(plugin_id: str) -> PluginDatabase:
        opened.append(create_database(config, plugin_id))
        return opened[-1]

    yield open_
    for db in opened:
        await db.close()


async def test_crud(open_db: OpenDb) -> None:
    db = await open_db("crud").get_client()
    await db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty INTEGER)")
    assert await db.execute("INSERT INTO items (id, name, qty) VALUES ($1, $2, $3)", 1, "apple", 3) == 1
    await db.execute("INSERT INTO items (id, name, qty) VALUES ($1, $2, $3)", 2, "pear", 5)
    assert await db.fetch_all("SELECT id, name, qty FROM items ORDER BY id") == [
        {"id": 1, "name": "apple", "qty": 3},
        {"id": 2, "name": "pear", "qty": 5},
    ]
    assert await db.fetch_one("SELECT name FROM items WHERE qty > $1 ORDER BY id", 4) == {"name": "pear"}
    assert await db.fetch_one("SELECT name FROM items WHERE id = $1", 99) is None
    assert await db.execute("UPDATE items SET qty = qty + $1", 10) == 2
    assert await db.fetch_val("SELECT SUM(qty) FROM items") == 28
    assert await db.fetch_val("SELECT name FROM items WHERE name = $1 OR name = $1", "apple") == "apple"
    assert await db.execute("DELETE FROM items WHERE id = $1", 1) == 1
    assert await db.fetch_val("SELECT COUNT(*) FROM items") == 1
    assert await db.fetch_val("SELECT name FROM items WHERE id = $1", 1) is None


async def test_transaction_commits_and_rolls_back(open_db: OpenDb) -> None:
    db = await open_db("tx").get_client()
    await db.execute("CREATE TABLE t (v INTEGER)")
    async with db.transaction() as tx:
        await tx.execute("INSERT INTO t (v) VALUES ($1)", 1)
        assert await tx.fetch_val("SELECT COUNT(*) FROM t") == 1
    with pytest.raises(RuntimeError, match="boom"):
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO t (v) VALUES ($1)", 2)
            raise RuntimeError("boom")
    async with db.transaction() as tx:  # nested: the inner block rolls back alone
        await tx.execute("INSERT INTO t (v) VALUES ($1)", 3)
        with pytest.raises(ValueError):
            async with tx.transaction() as inner:
                await inner.execute("INSERT INTO t (v) VALUES ($1)", 4)
                raise ValueError
    assert [r["v"] for r in await db.fetch_all("SELECT v FROM t ORDER BY v")] == [1, 3]


async def test_concurrent_transactions_do_not_interleave(open_db: OpenDb) -> None:
    db = await open_db("conc").get_client()
    await db.execute("CREATE TABLE counter (n INTEGER)")
    await db.execute("INSERT INTO counter (n) VALUES (0)")

    # BEGIN IMMEDIATE serializes SQLite writers; PostgreSQL needs the row lock
    lock = " FOR UPDATE" if db.dialect == "postgres" else ""

    async def bump() -> None:
        async with db.transaction() as tx:
            n = await tx.fetch_val("SELECT n FROM counter" + lock)
            await asyncio.sleep(0.01)
            await tx.execute("UPDATE counter SET n = $1", n + 1)

    await asyncio.gather(*(bump() for _ in range(10)))
    assert await db.fetch_val("SELECT n FROM counter") == 10


MIGRATIONS = [
    ("001_notes", "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes VALUES (1, 'a;b');"),
    ("002_seen", "CREATE TABLE seen (n INTEGER); INSERT INTO seen (n) VALUES (1)"),
]


async def test_migrations_apply_once_in_order(open_db: OpenDb) -> None:
    service = open_db("migr")
    assert await service.migrate(MIGRATIONS[:1]) == ["001_notes"]
    assert await service.migrate(MIGRATIONS) == ["002_seen"]
    assert await service.migrate(MIGRATIONS) == []
    db = await service.get_client()
    assert await db.fetch_val("SELECT body FROM notes") == "a;b"
    assert await db.fetch_val("SELECT COUNT(*) FROM seen") == 1
    names = [r["name"] for r in await db.fetch_all("SELECT name FROM kernel_migrations ORDER BY name")]
    assert names == ["001_notes", "002_seen"]


async def test_concurrent_migrations_run_once(open_db: OpenDb) -> None:
    services = [open_db("race") for _ in range(3)]  # three "workers" of one plugin
    results = await asyncio.gather(*(s.migrate(MIGRATIONS) for s in services))
    assert sorted(functools.reduce(operator.iadd, results, [])) == ["001_notes", "002_seen"]
    assert await (await services[0].get_client()).fetch_val("SELECT COUNT(*) FROM seen") == 1


async def test_failed_migration_applies_nothing(open_db: OpenDb) -> None:
    service = open_db("broken")
    bad = [("001_ok", "CREATE TABLE ok (n INTEGER)"), ("002_bad", "CREATE TABLE oops (")]
    with pytest.raises(MigrationError, match="plugin 'broken': migration '002_bad' failed"):
        await service.migrate(bad)
    assert await service.migrate(bad[:1]) == ["001_ok"]
    with pytest.raises(ValueError, match="unique"):
        await service.migrate([("x", "SELECT 1"), ("x", "SELECT 2")])


async def test_plugins_cannot_see_each_other(open_db: OpenDb) -> None:
    a = await open_db("plug-a").get_client()
    b = await open_db("plug-b").get_client()
    await a.execute("CREATE TABLE secrets (v TEXT)")
    await a.execute("INSERT INTO secrets (v) VALUES ($1)", "alpha")
    with pytest.raises(Exception, match="secrets"):
        await b.fetch_all("SELECT * FROM secrets")
    await b.execute("CREATE TABLE secrets (v TEXT)")  # the same name is free in b
    assert await b.fetch_val("SELECT COUNT(*) FROM secrets") == 0
    assert await a.fetch_val("SELECT v FROM secrets") == "alpha"


# ----------------------------------------------------------------------------- settings


def test_settings_defaults_and_per_plugin_override(tmp_path: Path) -> None:
    default = read_settings(config_of(), "x")
    assert (default.client, default.connection, default.pool_min, default.pool_max) == ("sqlite", None, 1, 5)
    config = config_of(
        database={
            "client": "pg",
            "connection": {"host": "db", "user": "u", "password": "p"},
            "pool": {"max": 3},
            "plugin": {
                "catalog": {"connection": {"database": "catalog_db"}, "pool": {"max": 8}},
                "local": {"client": "sqlite", "connection": {"directory": str(tmp_path)}},
            },
        }
    )
    other = read_settings(config, "other")
    assert (other.client, other.pool_max, other.own_database) == ("pg", 3, None)
    catalog = read_settings(config, "catalog")
    assert catalog.connection == {"host": "db", "user": "u", "password": "p", "database": "catalog_db"}
    assert (catalog.pool_max, catalog.own_database) == (8, "catalog_db")
    local = read_settings(config, "local")
    assert (local.client, local.connection) == ("sqlite", {"directory": str(tmp_path)})
    with pytest.raises(ValueError, match="client must be 'sqlite' or 'pg'"):
        read_settings(config_of(database={"client": "oracle"}), "x")
    with pytest.raises(ValueError, match="pluginDivisionMode"):
        read_settings(config_of(database={"client": "pg", "pluginDivisionMode": "table"}), "x")


async def test_per_plugin_override_to_another_engine(tmp_path: Path) -> None:
    config = config_of(
        database={
            "client": "pg",
            "connection": PG_ADMIN_DSN,
            "plugin": {"lite": {"client": "sqlite", "connection": {"directory": str(tmp_path / "lite")}}},
        }
    )
    service = create_database(config, "lite")
    try:
        db = await service.get_client()
        assert db.dialect == "sqlite"
        await db.execute("CREATE TABLE t (v INTEGER)")
        assert (tmp_path / "lite" / "lite.sqlite").exists()
    finally:
        await service.close()


async def test_sqlite_file_is_wal_and_in_memory_works(tmp_path: Path) -> None:
    service = create_database(config_of(database={"connection": {"directory": str(tmp_path)}}), "walp")
    memory = create_database(config_of(database={"connection": ":memory:"}), "mem")
    try:
        db = await service.get_client()
        assert await db.fetch_val("PRAGMA journal_mode") == "wal"
        mem = await memory.get_client()
        await mem.execute("CREATE TABLE t (v INTEGER)")
        assert await mem.fetch_val("SELECT COUNT(*) FROM t") == 0
    finally:
        await service.close()
        await memory.close()


def test_split_sqlite_script_keeps_semicolons_in_strings_and_triggers() -> None:
    script = """
        CREATE TABLE a (v TEXT);  -- a comment; with a semicolon
        INSERT INTO a VALUES ('x;y');
        CREATE TRIGGER tr AFTER INSERT ON a BEGIN INSERT INTO a VALUES ('t'); END;
    """
    parts = split_sqlite_script(script)
    assert len(parts) == 3
    assert parts[1].endswith("VALUES ('x;y');")
    assert parts[2].endswith("END;")


# ----------------------------------------------------------------------------- in real workers

NOTES = """
import os
from starlette.responses import JSONResponse
from kernel.api import core_services, create_plugin

plugin = create_plugin("notes")

@plugin.init(router=core_services.http_router, database=core_services.database)
async def init(router, database):
    await database.migrate([
        ("001_boot", "CREATE TABLE boot (n INTEGER); INSERT INTO boot (n) VALUES (1)"),
        ("002_notes", "CREATE TABLE notes (body TEXT)"),
    ])
    db = await database.get_client()

    async def add(request):
        await db.execute("INSERT INTO notes (body) VALUES ($1)", request.query_params["body"])
        return JSONResponse({"pid": os.getpid()})

    async def state(request):
        return JSONResponse({
            "pid": os.getpid(),
            "notes": [r["body"] for r in await db.fetch_all("SELECT body FROM notes")],
            "boot": await db.fetch_val("SELECT COUNT(*) FROM boot"),
            "migrations": [r["name"] for r in await db.fetch_all("SELECT name FROM kernel_migrations ORDER BY name")],
        })

    router.add_route("/notes", add, methods=["POST"])
    router.add_route("/state", state, methods=["GET"])
"""


@pytest.fixture(scope="module")
def notes_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("notes-site")
    make_package(site, "kernel-test-notes", {"test_notes_db": NOTES}, {"notes": "test_notes_db:plugin"})
    return site


def test_committed_row_survives_kill_9_of_the_worker(notes_site: Path, tmp_path: Path) -> None:
    config = kernel_config(database=database_config("sqlite", tmp_path))
    with KernelProcess(config, paths=[notes_site]) as k, httpx.Client(base_url=k.url, headers=AUTH) as c:
        resp = c.post("/api/notes/notes", params={"body": "keep me"})
        assert resp.status_code == 200, resp.text
        pid = resp.json()["pid"]
        os.kill(pid, signal.SIGKILL)

        def restarted() -> dict[str, Any] | None:
            r = c.get("/api/notes/state")
            return r.json() if r.status_code == 200 and r.json()["pid"] != pid else None

        state = wait_for(restarted)
        assert state["notes"] == ["keep me"]


@pytest.mark.parametrize("engine", ["sqlite", "pg-database"])
def test_three_replicas_starting_together_migrate_once(notes_site: Path, tmp_path: Path, engine: str) -> None:
    config = kernel_config(database=database_config(engine, tmp_path))
    config["backend"]["workers"]["plugins"] = {"notes": {"replicas": 3}}
    with KernelProcess(config, paths=[notes_site]) as k, httpx.Client(base_url=k.url, headers=AUTH) as c:
        states = [c.get("/api/notes/state").json() for _ in range(6)]
        for state in states:
            assert state["boot"] == 1, state
            assert state["migrations"] == ["001_boot", "002_notes"], state
        assert "failed" not in k.output()

"""``services.database_roles``: a PostgreSQL login per plugin, and PostgreSQL itself refusing the others' data.

Real processes: a kernel with two plugins on PostgreSQL, ``notes`` (``test_database.NOTES``) and ``spy``, whose
route takes the login its worker was given and tries, with it, to open ``notes``' database and read its table.
The server trusts local connections (passwords are not asked), so what is tested is the privileges: the
database owned by ``notes``' role, ``CONNECT`` revoked from ``PUBLIC``, the schema closed to ``PUBLIC``.
"""

from __future__ import annotations

import asyncio
import base64
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import yaml

from kernel.testing import KernelProcess, make_package
from kernel_services.database_roles import plugin_logins, scram_verifier
from tests.services.conftest import AUTH, PG_HOST, kernel_config, pg_fetch, unique_name
from tests.services.test_database import NOTES

pytestmark = pytest.mark.usefixtures("engines_cleanup")

ADMIN_PASSWORD = "kt-admin-password-never-in-a-worker"

SPY = """
import asyncpg
from starlette.responses import JSONResponse
from kernel.api import core_services, create_plugin

plugin = create_plugin("spy")

@plugin.init(router=core_services.http_router, database=core_services.database, config=core_services.root_config)
async def init(router, database, config):
    await database.migrate([("001", "CREATE TABLE mine (n INTEGER)")])
    db = await database.get_client()

    async def probe(request):
        login = config.get("backend.database.connection")
        await db.execute("INSERT INTO mine (n) VALUES (1)")
        out = {"login": login, "me": await db.fetch_val("SELECT current_user"),
               "mine": await db.fetch_val("SELECT count(*) FROM mine"), "database": config.get("backend.database")}
        args = {k: login[k] for k in ("host", "port", "user", "password") if k in login}
        try:  # with its own login: the other plugin's database, then its table
            conn = await asyncpg.connect(**args, database=request.query_params["database"])
            out["connected"] = True
            try:
                out["rows"] = await conn.fetch("SELECT * FROM " + request.query_params["table"])
            finally:
                await conn.close()
        except asyncpg.PostgresError as exc:
            out["refused"] = [type(exc).__name__, str(exc)]
        return JSONResponse(out)

    router.add_route("/probe", probe, methods=["GET"])
"""


@pytest.fixture(scope="module")
def roles_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("roles-site")
    make_package(site, "kernel-test-notes", {"test_notes_db": NOTES}, {"notes": "test_notes_db:plugin"})
    make_package(site, "kernel-test-spy", {"test_spy_db": SPY}, {"spy": "test_spy_db:plugin"})
    return site


def _admin(database: str = "test") -> dict[str, Any]:
    return {"host": PG_HOST, "port": 5432, "user": "postgres", "password": ADMIN_PASSWORD, "database": database}


async def _legacy(database: str) -> None:
    """A database the shared login made before the roles existed, with a table and a sequence of its own."""
    conn = await asyncpg.connect(host=PG_HOST, user="postgres", database="test")
    try:
        await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()
    conn = await asyncpg.connect(host=PG_HOST, user="postgres", database=database)
    try:
        await conn.execute("CREATE TABLE legacy (id SERIAL PRIMARY KEY, body TEXT); CREATE SEQUENCE loose")
        await conn.execute("INSERT INTO legacy (body) VALUES ('from before')")
    finally:
        await conn.close()


def test_each_plugin_connects_as_its_own_role_and_postgres_refuses_it_the_others_database(roles_site: Path) -> None:
    prefix = unique_name() + "_"
    notes_db, spy_db = prefix + "notes", prefix + "spy"
    asyncio.run(_legacy(notes_db))
    config = kernel_config(database={"client": "pg", "connection": _admin(), "prefix": prefix})
    for run in ("first", "restarted"):
        with KernelProcess(config, paths=[roles_site]) as k, httpx.Client(base_url=k.url, headers=AUTH) as c:
            assert c.post("/api/notes/notes", params={"body": run}).status_code == 200
            resp = c.get("/api/spy/probe", params={"database": notes_db, "table": "notes"})
            assert resp.status_code == 200, resp.text
            seen = resp.json()
            assert "pluginRoles unset and login 'postgres' may create roles" in k.output()
        # its own database works, as its own role, and the kernel's password is nowhere in its config
        assert seen["me"] == spy_db and seen["login"]["user"] == spy_db
        assert seen["mine"] == (1 if run == "first" else 2)
        assert ADMIN_PASSWORD not in resp.text
        assert seen["login"]["password"] and seen["login"]["password"] != ADMIN_PASSWORD
        # the attempt reached PostgreSQL with spy's login, and PostgreSQL refused it
        assert "connected" not in seen
        assert seen["refused"][0] == "InsufficientPrivilegeError", seen
        assert f'permission denied for database "{notes_db}"' in seen["refused"][1]
    # what the shared login made earlier is now the notes role's, and notes' rows are all there
    owners = asyncio.run(
        pg_fetch(
            notes_db,
            "SELECT c.relname, pg_get_userbyid(c.relowner) AS owner FROM pg_class c "
            "WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'S') ORDER BY 1",
        )
    )
    assert {r["relname"]: r["owner"] for r in owners} == {
        "kernel_migrations": notes_db,
        "legacy": notes_db,
        "legacy_id_seq": notes_db,
        "loose": notes_db,
        "boot": notes_db,
        "notes": notes_db,
    }
    rows = asyncio.run(pg_fetch(notes_db, "SELECT body FROM notes ORDER BY body"))
    assert [r["body"] for r in rows] == ["first", "restarted"]
    db = asyncio.run(
        pg_fetch("test", "SELECT pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname = $1", notes_db)
    )
    assert db == [{"owner": notes_db}]


def test_in_schema_mode_postgres_refuses_a_plugin_the_others_schema(roles_site: Path) -> None:
    database = unique_name()
    config = kernel_config(
        database={"client": "pg", "connection": _admin(database), "pluginDivisionMode": "schema", "pluginRoles": True}
    )
    with KernelProcess(config, paths=[roles_site]) as k, httpx.Client(base_url=k.url, headers=AUTH) as c:
        assert c.post("/api/notes/notes", params={"body": "private"}).status_code == 200
        resp = c.get("/api/spy/probe", params={"database": database, "table": "notes.notes"})
        assert resp.status_code == 200, resp.text
        seen = resp.json()
        assert "pluginRoles is true" in k.output()
    assert seen["me"] == f"{database}_spy" and seen["mine"] == 1
    assert ADMIN_PASSWORD not in resp.text
    assert seen["connected"] is True  # the shared database: connected, then refused the schema
    assert seen["refused"][0] == "InsufficientPrivilegeError", seen
    assert "permission denied for schema notes" in seen["refused"][1]


def test_plugin_roles_false_keeps_the_kernels_login(roles_site: Path) -> None:
    prefix = unique_name() + "_"
    config = kernel_config(database={"client": "pg", "connection": _admin(), "prefix": prefix, "pluginRoles": False})
    with KernelProcess(config, paths=[roles_site]) as k, httpx.Client(base_url=k.url, headers=AUTH) as c:
        resp = c.get("/api/spy/probe", params={"database": prefix + "notes", "table": "notes"})
        assert resp.status_code == 200, resp.text
        assert resp.json()["me"] == "postgres"
        assert "pluginRoles is false" in k.output()


def test_kernel_config_visible_shows_the_plugins_own_login(roles_site: Path, tmp_path: Path) -> None:
    prefix = unique_name() + "_"
    cfg = tmp_path / "app-config.yaml"
    cfg.write_text(
        yaml.safe_dump({"backend": {"database": {"client": "pg", "connection": _admin(), "prefix": prefix}}})
    )
    run = subprocess.run(
        [sys.executable, "-m", "kernel.cli", "config", "visible", "spy", "--config", str(cfg)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": f"{roles_site}:{Path.cwd()}", "PATH": "/usr/bin:/bin"},
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    shown = yaml.safe_load(run.stdout)
    assert shown["backend"]["database"]["connection"]["user"] == prefix + "spy"
    assert ADMIN_PASSWORD not in run.stdout
    assert (
        "# its PostgreSQL login: backend.database.pluginRoles unset and login 'postgres' may create roles" in run.stdout
    )


async def _unprivileged(role: str) -> None:
    """A login that may create databases, not roles."""
    conn = await asyncpg.connect(host=PG_HOST, user="postgres", database="test")
    try:
        await conn.execute(f'CREATE ROLE "{role}" LOGIN CREATEDB')  # no CREATEROLE
    finally:
        await conn.close()


def test_a_login_that_may_not_create_roles(roles_site: Path) -> None:
    """Unset: the plugins share it, and the log says why; ``true``: the kernel does not start."""
    login = unique_name()
    asyncio.run(_unprivileged(login))
    connection = {"host": PG_HOST, "port": 5432, "user": login, "database": "test"}
    config = kernel_config(database={"client": "pg", "connection": connection, "prefix": login + "_"})
    with KernelProcess(config, paths=[roles_site]) as k, httpx.Client(base_url=k.url, headers=AUTH) as c:
        resp = c.get("/api/spy/probe", params={"database": login + "_notes", "table": "notes"})
        assert resp.status_code == 200, resp.text
        assert resp.json()["me"] == login
        assert resp.json()["rows"] == []  # the shared login: notes' table is open to spy
        assert f"login '{login}' may not create roles: every plugin connects to PostgreSQL" in k.output()
    config["backend"]["database"]["pluginRoles"] = True
    k = KernelProcess(config, paths=[roles_site]).start(wait=False)
    try:
        assert k.proc is not None and k.proc.wait(30) == 1
    finally:
        k.stop()
    assert "kernel not started: cannot make the PostgreSQL role of plugin" in k.output()
    assert "permission denied to create role" in k.output()


async def _verifier_of(role: str, password: str) -> str:
    """What PostgreSQL itself stores for ``password`` (``scram-sha-256``), for a role made and dropped here."""
    conn = await asyncpg.connect(host=PG_HOST, user="postgres", database="test")
    try:
        await conn.execute("SET password_encryption = 'scram-sha-256'")
        await conn.execute(f"CREATE ROLE \"{role}\" PASSWORD '{password}'")
        return str(await conn.fetchval("SELECT rolpassword FROM pg_authid WHERE rolname = $1", role))
    finally:
        await conn.execute(f'DROP ROLE IF EXISTS "{role}"')
        await conn.close()


def test_a_roles_password_is_sent_as_the_verifier_postgresql_itself_would_store() -> None:
    """The kernel sets each role's password as its SCRAM-SHA-256 verifier (the password in no statement):
    the same string PostgreSQL makes from the password, given its salt."""
    password = "kt-Plugin_Password-123"
    stored = asyncio.run(_verifier_of("ki_" + unique_name(), password))
    salt = base64.b64decode(stored.split("$")[1].split(":")[1])
    assert stored.startswith("SCRAM-SHA-256$4096:")
    assert scram_verifier(password, salt) == stored
    assert scram_verifier(password + "x", salt) != stored


async def _two_kernels_make_the_logins(config: dict[str, Any]) -> list[dict[str, dict[str, Any]]]:
    from kernel.config import Config

    reader = Config.from_dict(config)
    return list(await asyncio.gather(*(plugin_logins(reader, ["notes", "spy"]) for _ in range(2))))


def test_kernels_sharing_a_server_make_the_roles_at_once_and_agree_on_their_passwords() -> None:
    """Two supervisors making the same roles at the same moment both succeed (no "tuple concurrently
    updated") and give each plugin the same password, the one PostgreSQL holds: one kernel starting
    never locks out the other's workers. The secret they derive from is closed to the plugins' roles."""
    prefix = unique_name() + "_"
    config = kernel_config(database={"client": "pg", "connection": _admin(), "prefix": prefix})
    one, two = asyncio.run(_two_kernels_make_the_logins(config))
    for pid in ("notes", "spy"):
        login = one[pid]["backend.database.connection"]
        assert login == two[pid]["backend.database.connection"]
        assert login["user"] == prefix + pid and login["password"] not in ("", ADMIN_PASSWORD)
        stored = asyncio.run(pg_fetch("test", "SELECT rolpassword FROM pg_authid WHERE rolname = $1", login["user"]))
        salt = base64.b64decode(stored[0]["rolpassword"].split("$")[1].split(":")[1])
        assert scram_verifier(login["password"], salt) == stored[0]["rolpassword"]

    async def read_secret_as(user: str) -> str:
        conn = await asyncpg.connect(host=PG_HOST, user=user, database="test")
        try:
            await conn.fetch("SELECT secret FROM kernel_roles.secret")
        except asyncpg.PostgresError as exc:
            return str(exc)
        finally:
            await conn.close()
        return "read"

    assert asyncio.run(read_secret_as(prefix + "spy")) == "permission denied for schema kernel_roles"

"""The attacker suite: plugin ``attacker`` tries to take what is not its own, beside victims that keep serving.

One real kernel under the default settings, as far as this machine allows: config scoped, PostgreSQL
with a role per plugin (``pluginRoles`` unset: on, the login may create roles), the Redis cache with a
user per plugin (``pluginUsers`` unset: on), a cgroup per plugin (``cgroups`` unset: on, as root). The
victims: ``ledger`` (its database), ``memo`` (its cache), ``echo``. Every attempt must fail, each with
the refusal of the party that enforces it (the kernel's config scoping, PostgreSQL, Redis, the Linux
kernel), and the victims must go on serving.

The rows that need OS users (signals, ``/proc``, SQLite files) are in ``test_attacker_os_users.py``.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from kernel.testing import KernelProcess
from tests.conftest import TOKEN, base_config
from tests.isolation.conftest import RedisAdmin, cgroups_writable, started

AUTH = {"Authorization": f"Bearer {TOKEN}"}
PG_PASSWORD = "ki-pg-admin-password-never-in-a-worker"
LEDGER_SECRET = "ki-ledger-own-api-token-value"


@dataclass
class Scene:
    kernel: KernelProcess
    client: httpx.Client
    prefix: str  # the PostgreSQL database/role prefix
    redis: RedisAdmin


async def _drop(prefix: str) -> None:
    conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/test")
    try:
        for row in await conn.fetch("SELECT datname FROM pg_database WHERE starts_with(datname, $1)", prefix):
            await conn.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)')
        for row in await conn.fetch("SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)", prefix):
            await conn.execute(f'DROP ROLE IF EXISTS "{row["rolname"]}"')
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def scene(attack_site: Path, module_redis_admin: RedisAdmin) -> Iterator[Scene]:
    prefix = f"ki_atk_{secrets.token_hex(4)}_"
    config = base_config(requestTimeout=30)
    backend: dict[str, Any] = config["backend"]  # type: ignore[assignment]
    backend["database"] = {
        "client": "pg",
        "connection": {"host": "127.0.0.1", "port": 5432, "user": "postgres", "password": PG_PASSWORD},
        "prefix": prefix,
    }
    backend["cache"] = {"store": "redis", "connection": module_redis_admin.url, "keyPrefix": module_redis_admin.prefix}
    config["ledger"] = {"apiToken": LEDGER_SECRET, "color": "green"}
    backend["dashboard"] = {"operators": ["external:ci-bot"]}  # TOKEN's subject reads the snapshot
    try:
        with (
            started(config, attack_site, f"ki-{secrets.token_hex(4)}") as k,
            httpx.Client(base_url=k.url, timeout=60) as c,
        ):
            assert c.post("/api/ledger/entries", params={"body": "ledger's own"}).status_code == 200
            assert c.put("/api/memo/cache", params={"k": "secret", "v": "memo's own"}).status_code == 200
            yield Scene(k, c, prefix, module_redis_admin)
    finally:
        asyncio.run(_drop(prefix))


def _try(c: httpx.Client, route: str, **params: Any) -> dict[str, Any]:
    resp = c.get(f"/api/attacker/{route}", params=params)
    assert resp.status_code == 200, resp.text
    answer: dict[str, Any] = resp.json()
    return answer


def _refused(answer: dict[str, Any], *words: str) -> str:
    assert answer["ok"] is False, answer
    for word in words:
        assert word in answer["error"], answer
    return str(answer["error"])


def test_the_victims_serve_throughout(scene: Scene) -> None:
    c = scene.client
    assert "ledger's own" in c.get("/api/ledger/entries").json()["entries"]
    assert c.get("/api/memo/cache", params={"k": "secret"}).json()["value"] == "memo's own"
    assert c.get("/api/echo/pid", headers=AUTH).status_code == 200


def test_the_whole_config_holds_no_secret_of_the_kernel_nor_another_plugins_section(scene: Scene) -> None:
    whole = scene.client.get("/api/attacker/config")
    assert whole.json()["ok"] is True
    for secret in (TOKEN, PG_PASSWORD, scene.redis.password, LEDGER_SECRET):
        assert secret not in whole.text
    assert "ledger" not in whole.json()["got"]


def test_another_plugins_section_and_the_kernels_secrets_are_refused_by_name(scene: Scene) -> None:
    c = scene.client
    _refused(_try(c, "config", key="ledger"), "ConfigError", "ledger", "another plugin's section")
    _refused(_try(c, "config", key="ledger.apiToken"), "ConfigError", "another plugin's section")
    _refused(_try(c, "config", key="backend.auth.externalAccess"), "ConfigError", "the gateway's alone")
    # its database and cache logins are its own, never the kernel's
    login = _try(c, "config", key="backend.database.connection")["got"]
    assert login["user"] == scene.prefix + "attacker" and login["password"] != PG_PASSWORD
    assert scene.redis.password not in _try(c, "config", key="backend.cache.connection")["got"]


def test_another_plugins_database_is_refused_by_postgresql(scene: Scene) -> None:
    answer = _try(scene.client, "pg", database=scene.prefix + "ledger", table="entries")
    _refused(answer, "InsufficientPrivilegeError", f'permission denied for database "{scene.prefix}ledger"')
    own = _try(scene.client, "pg", database=scene.prefix + "attacker", table="(SELECT current_user AS me) AS t")
    assert own == {"ok": True, "got": [{"me": scene.prefix + "attacker"}]}  # its own database, as its own role


def test_another_plugins_cache_keys_and_flushall_are_refused_by_redis(scene: Scene) -> None:
    c, key = scene.client, f"{scene.redis.prefix}memo:secret"
    for op in ("get", "set"):
        _refused(_try(c, "redis", op=op, key=key), "NoPermissionError")
    for op in ("flushall", "keys", "config"):
        _refused(_try(c, "redis", op=op), "NoPermissionError")
    assert c.get("/api/memo/cache", params={"k": "secret"}).json()["value"] == "memo's own"


@pytest.mark.skipif(not cgroups_writable(), reason="cgroups are not writable here: nothing bounds a fork bomb")
def test_a_fork_bomb_is_held_by_the_default_process_limit(scene: Scene) -> None:
    forked = _try(scene.client, "fork", n=3000)["got"]
    assert 0 < forked < 512, forked  # backend.workers.limits.maxProcesses: 512 by default
    assert scene.client.get("/api/echo/pid", headers=AUTH).status_code == 200


def test_kernel_status_and_the_dashboard_show_what_keeps_each_plugin_apart(scene: Scene) -> None:
    snapshot = scene.client.get("/.kernel/dashboard/v1/snapshot", headers=AUTH)
    assert snapshot.status_code == 200, snapshot.text
    attacker = next(p for p in snapshot.json()["plugins"] if p["id"] == "attacker")["isolation"]
    assert attacker["runsAs"] == "the kernel's user"
    assert attacker["config"] == "scoped"
    assert attacker["database"] == f"role {scene.prefix}attacker"
    assert attacker["cache"] == f"Redis user {scene.redis.prefix}plugin:attacker"
    if cgroups_writable():
        assert attacker["cgroup"].endswith("/attacker: CPU uncapped, weight 100, 512 processes, memory 2048 MB")
    for secret in (PG_PASSWORD, scene.redis.password):
        assert secret not in snapshot.text
    status = subprocess.run(
        [sys.executable, "-m", "kernel.cli", "status", "--url", scene.kernel.url, "--token", TOKEN],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert status.returncode == 0, status.stderr
    row = next(line for line in status.stdout.splitlines() if line.startswith("attacker ") and "role" in line)
    assert f"role {scene.prefix}attacker" in row and "scoped" in row and "the kernel's user" in row

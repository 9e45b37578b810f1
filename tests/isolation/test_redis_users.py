"""``services.cache_users``: a Redis ACL user per plugin, and Redis itself refusing a plugin the others' keys.

Real processes: a kernel whose cache is on Redis with a login of the test's own that may do everything
(as a kernel's would), ``memo`` keeping a value in its cache, and ``attacker`` using the login its worker
was given to read, overwrite and flush what is not its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import httpx
import redis

from kernel.testing import KernelProcess
from tests.conftest import base_config
from tests.isolation.conftest import REDIS, RedisAdmin, started


def _config(admin: RedisAdmin, **cache: Any) -> dict[str, Any]:
    config = base_config()
    config["backend"]["cache"] = {"store": "redis", "connection": admin.url, "keyPrefix": admin.prefix, **cache}  # type: ignore[index]
    return config


def _attack(c: httpx.Client, op: str, key: str = "") -> dict[str, Any]:
    resp = c.get("/api/attacker/redis", params={"op": op, "key": key})
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


def test_a_plugin_reaches_only_its_own_keys_with_a_redis_user_of_its_own(
    attack_site: Path, redis_admin: RedisAdmin
) -> None:
    victim_key = f"{redis_admin.prefix}memo:secret"
    passwords = []
    for run in ("first", "restarted"):
        with (
            started(_config(redis_admin), attack_site) as k,
            httpx.Client(base_url=k.url, timeout=20) as c,
        ):
            assert c.put("/api/memo/cache", params={"k": "secret", "v": run}).status_code == 200
            assert "backend.cache.pluginUsers unset and login" in k.output()
            assert "may manage ACL users: each plugin reaches the Redis cache as a user of its own" in k.output()
            login = c.get("/api/attacker/config", params={"key": "backend.cache.connection"}).json()["got"]
            # its own login, never the kernel's
            assert unquote(urlparse(login).username or "") == f"{redis_admin.prefix}plugin:attacker"
            assert redis_admin.password not in c.get("/api/attacker/config").text
            passwords.append(login)
            # the victim's key: read, overwritten, and the whole server flushed, each refused by Redis
            for op, key in [
                ("get", victim_key),
                ("set", victim_key),
                ("flushall", ""),
                ("keys", ""),
                ("config", ""),
                ("scan", ""),
            ]:
                seen = _attack(c, op, key)
                assert seen["ok"] is False, (op, seen)
                assert "NoPermissionError" in seen["error"] or "NOPERM" in seen["error"], (op, seen)
            # its own cache works, through the service and with its own login directly
            assert c.put("/api/attacker/cache", params={"k": "mine", "v": "kept"}).json()["ok"]
            assert c.get("/api/attacker/cache", params={"k": "mine"}).json()["got"] == "kept"
            assert _attack(c, "get", f"{redis_admin.prefix}attacker:mine")["got"] == '"kept"'
            # and the victim still reads what it wrote
            assert c.get("/api/memo/cache", params={"k": "secret"}).json()["value"] == run
            assert set(redis_admin.users()) >= {
                f"{redis_admin.prefix}plugin:{p}" for p in ("attacker", "echo", "ledger", "memo")
            }
        # the kernel stopped: its users are gone
        assert redis_admin.users() == [], k.output()
    assert passwords[0] != passwords[1]  # a new password at each start
    with redis.Redis.from_url(f"redis://{REDIS}/0") as r:
        assert r.get(victim_key) == b'"restarted"'


def test_plugin_users_false_keeps_the_kernels_login(attack_site: Path, redis_admin: RedisAdmin) -> None:
    with (
        started(_config(redis_admin, pluginUsers=False), attack_site) as k,
        httpx.Client(base_url=k.url, timeout=20) as c,
    ):
        assert (
            "backend.cache.pluginUsers is false: every plugin reaches the Redis cache with the kernel's login"
            in k.output()
        )
        assert redis_admin.users() == []
        assert c.put("/api/memo/cache", params={"k": "secret", "v": "open"}).status_code == 200
        seen = _attack(c, "get", f"{redis_admin.prefix}memo:secret")
        assert seen == {"ok": True, "got": '"open"'}  # the shared login: nothing keeps the plugins apart


def test_a_login_that_may_not_manage_users(attack_site: Path, redis_admin: RedisAdmin) -> None:
    """Unset: the plugins share it, and the log says why; ``true``: the kernel does not start."""
    limited = RedisAdmin(f"{redis_admin.prefix}limited", "limited-password", redis_admin.prefix)
    with redis.Redis.from_url(f"redis://{REDIS}/0") as r:
        r.execute_command("ACL", "SETUSER", limited.name, "on", f">{limited.password}", "~*", "+@all", "-@admin")
    with started(_config(limited), attack_site) as k, httpx.Client(base_url=k.url, timeout=20) as c:
        assert c.put("/api/memo/cache", params={"k": "secret", "v": "shared"}).status_code == 200
        assert f"login '{limited.name}' may not manage ACL users: every plugin reaches the Redis cache" in k.output()
    k = KernelProcess(_config(limited, pluginUsers=True), paths=[attack_site]).start(wait=False)
    try:
        assert k.proc is not None and k.proc.wait(30) == 1
    finally:
        k.stop()
    assert "kernel not started: cannot make the Redis user of plugin" in k.output()


def test_with_scoping_off_a_worker_still_gets_its_own_login(attack_site: Path, redis_admin: RedisAdmin) -> None:
    config = _config(redis_admin)
    config["backend"]["workers"]["scopeConfig"] = False  # type: ignore[index]
    with started(config, attack_site) as k, httpx.Client(base_url=k.url, timeout=20) as c:
        login = c.get("/api/attacker/config", params={"key": "backend.cache.connection"}).json()["got"]
        assert unquote(urlparse(login).username or "") == f"{redis_admin.prefix}plugin:attacker", k.output()
        seen = _attack(c, "get", f"{redis_admin.prefix}memo:secret")
        assert seen["ok"] is False and "NoPermissionError" in seen["error"], seen

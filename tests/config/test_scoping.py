"""``scope_config``: what one plugin's workers get of the config, and the error for what they do not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kernel.config import Config, ConfigError, load_config
from kernel.config.scoping import scope_config

DATA: dict[str, Any] = {
    "hello": {"greeting": "hi", "apiToken": "own-secret"},
    "proxy": {"endpoints": {"/x": {"target": "http://x", "headers": {"Authorization": "Bearer up"}}}},
    "integrations": {"github": [{"host": "github.com", "token": "ghp"}], "gitlab": {"host": "gl"}},
    "app": {"title": "T", "baseUrl": "http://a"},
    "backend": {
        "baseUrl": "http://b",
        "database": {
            "client": "pg",
            "connection": {"password": "pw"},
            "plugin": {"proxy": {"x": 1}, "hello": {"y": 2}},
        },
        "cache": {"store": "redis", "connection": "redis://:pw@r"},
        "auth": {"externalAccess": [{"type": "static", "options": {"token": "t" * 10}}], "keyDurationSeconds": 5},
        "tracing": {"headers": {"authorization": "x"}},
        "rateLimit": {"max": 5, "store": {"type": "redis", "connection": "redis://:limiter-pw@r"}},
    },
}


def _hidden_error(config: Config, key: str) -> str:
    with pytest.raises(ConfigError) as info:
        config.get_optional(key)
    return str(info.value)


def test_own_section_whole_runtime_without_secrets_but_the_login() -> None:
    got = scope_config(Config.from_dict(DATA), "hello")
    assert got.get("hello") == DATA["hello"]
    assert got.get("app") == DATA["app"]
    assert got.get("backend.database") == {
        "client": "pg",
        "connection": {"password": "pw"},
        "plugin": {"hello": {"y": 2}},
    }
    assert got.get("backend.cache.connection") == "redis://:pw@r"  # the worker's own login (today the shared one)
    assert got.get("backend.auth") == {"keyDurationSeconds": 5}
    assert set(got.keys()) == {"hello", "app", "backend"}
    assert "another plugin's section" in _hidden_error(got, "proxy.endpoints")
    assert "the gateway's alone" in _hidden_error(got, "backend.auth.externalAccess.0")
    assert "the gateway's alone" in _hidden_error(got, "backend.rateLimit.store.connection")  # its password
    assert got.get("backend.rateLimit.max") == 5
    assert "another plugin's database" in _hidden_error(got, "backend.database.plugin.proxy")
    assert "a secret of the kernel's settings" in _hidden_error(got, "backend.tracing.headers.authorization")
    assert got.get_optional("hello.never") is None and got.get_optional("nowhere") is None


def test_declared_reads_without_secrets_unless_asked() -> None:
    config = Config.from_dict(DATA)
    got = scope_config(config, "hello", reads=("integrations.github", "proxy.endpoints"), secrets=("proxy",))
    assert got.get("integrations") == {"github": [{"host": "github.com"}]}
    assert got.get("proxy.endpoints./x.headers.Authorization") == "Bearer up"  # asked
    error = _hidden_error(got.get_config_list("integrations.github")[0], "token")
    assert error == (
        "config key 'integrations.github.token' is not visible to plugin 'hello': "
        "it is a secret; declare it in create_plugin(config_secrets=...) to read it"
    )
    assert "another plugin's section" in _hidden_error(got, "integrations.gitlab")


def test_schema_marks_and_directive_values_are_secret(tmp_path: Path) -> None:
    (tmp_path / "key.txt").write_text("from-a-file")
    cfg = tmp_path / "app-config.yaml"
    cfg.write_text("vault:\n  url: ${VAULT_URL}\n  key: {$file: key.txt}\n  pin: 1234\n  name: v\n")
    config = load_config([cfg], env={"VAULT_URL": "https://v"})
    got = scope_config(config, "hello", reads=("vault",), secret_paths=("vault.pin",))
    assert got.get("vault") == {"name": "v"}
    for key in ("vault.url", "vault.key", "vault.pin"):
        assert "it is a secret" in _hidden_error(got, key)


def test_the_snapshot_keeps_what_is_withheld() -> None:
    got = Config.from_snapshot(scope_config(Config.from_dict(DATA), "hello").snapshot())
    assert "the gateway's alone" in _hidden_error(got.get_config("backend"), "auth.externalAccess")
    assert got.hidden()["proxy"].startswith("plugin 'hello'")


def test_a_plugins_own_login_replaces_the_kernels() -> None:
    config = Config.from_dict(
        {"backend": {"database": {"client": "pg", "connection": {"host": "db", "user": "kernel", "password": "admin"}}}}
    )
    own = {"host": "db", "user": "hello_role", "password": "its-own"}
    scoped = scope_config(config, "hello", login={"backend.database.connection": own})
    assert scoped.get("backend.database.connection") == own
    assert "admin" not in str(scoped.to_dict())
    with pytest.raises(ValueError, match="not at integrations.github"):
        scope_config(config, "hello", login={"integrations.github": {}})

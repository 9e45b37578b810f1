"""services.config: secrets from schemas and key names, plugin schema validation, reloading."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated, Any

import msgspec
import pytest

from kernel.config import Config, ConfigError, load_config
from services.config import (
    SECRET,
    ReloadingConfig,
    ReloadSettings,
    Secret,
    is_secret_key,
    plugin_secret_paths,
    read_reload_settings,
    redact_secrets,
    schema_secret_paths,
    secret_values,
    validate_plugin_config,
)

# ---------------------------------------------------------------------------- secrets


class Endpoint(msgspec.Struct, rename="camel"):
    url: str
    bearer_value: Secret | None = None


class Schema(msgspec.Struct, rename="camel"):
    client_key: Secret
    port: int = 8080
    endpoints: dict[str, Endpoint] = {}
    mirrors: list[Endpoint] = []
    vault: Annotated[dict[str, Any], msgspec.Meta(extra={"secret": True})] = {}
    child: Schema | None = None  # recursive schemas are fine


def test_schema_secret_paths_follow_renames_lists_dicts_optionals_and_recursion() -> None:
    assert schema_secret_paths(Schema, "demo") == [
        "demo.clientKey",
        "demo.endpoints.*.bearerValue",
        "demo.mirrors.bearerValue",
        "demo.vault",
    ]


def test_plugin_secret_paths_skip_plugins_without_or_with_a_bad_schema() -> None:
    assert plugin_secret_paths({"a": Schema, "b": None, "c": object()}) == schema_secret_paths(Schema, "a")


@pytest.mark.parametrize("key", ["password", "dbPassword", "apiToken", "client_secret", "apiKey", "Authorization"])
def test_secret_key_names(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ["port", "host", "baseUrl", "credentials", "plugins"])
def test_ordinary_key_names(key: str) -> None:
    assert not is_secret_key(key)


DATA: dict[str, Any] = {
    "demo": {
        "clientKey": "ck-123456",
        "port": 8080,
        "endpoints": {"a": {"url": "http://a", "bearerValue": "bv-aaaaaa"}},
        "mirrors": [{"url": "http://m", "bearerValue": "bv-mmmmmm"}],
        "vault": {"x": "vault-x-value"},
    },
    "backend": {
        "database": {"connection": {"password": "pg-pass-1", "host": "db"}},
        "auth": {"externalAccess": [{"type": "static", "options": {"token": "tok-1234", "subject": "ci"}}]},
    },
    "proxy": {"endpoints": {"/x": {"headers": {"Authorization": "Bearer zzz-999"}, "credentials": "require"}}},
    "tokens": {"issuer": "me"},  # an object under a secret-looking key: its children are looked at
}


def test_redact_secrets_hides_schema_and_key_name_secrets_only() -> None:
    out = redact_secrets(DATA, schema_secret_paths(Schema, "demo"))
    assert out["demo"] == {
        "clientKey": SECRET,
        "port": 8080,
        "endpoints": {"a": {"url": "http://a", "bearerValue": SECRET}},
        "mirrors": [{"url": "http://m", "bearerValue": SECRET}],
        "vault": SECRET,
    }
    assert out["backend"]["database"]["connection"] == {"password": SECRET, "host": "db"}
    assert out["backend"]["auth"]["externalAccess"][0]["options"] == {"token": SECRET, "subject": "ci"}
    assert out["proxy"]["endpoints"]["/x"] == {"headers": {"Authorization": SECRET}, "credentials": "require"}
    assert out["tokens"] == {"issuer": "me"}
    assert DATA["demo"]["clientKey"] == "ck-123456"  # the input is untouched


def test_redact_secrets_accepts_a_config() -> None:
    assert redact_secrets(Config.from_dict({"a": {"apiToken": "x"}})) == {"a": {"apiToken": SECRET}}


def test_secret_values_collects_the_strings_worth_searching_for() -> None:
    values = secret_values(DATA, schema_secret_paths(Schema, "demo"))
    assert values == {
        "ck-123456",
        "bv-aaaaaa",
        "bv-mmmmmm",
        "vault-x-value",
        "pg-pass-1",
        "tok-1234",
        "Bearer zzz-999",
    }
    assert secret_values({"a": {"password": "abc", "tokenTtl": 3600}}) == set()  # short or not a string


# ---------------------------------------------------------------------------- plugin schema validation


def _cfg(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "app-config.yaml"
    path.write_text(text)
    return load_config([path], env={})


def test_validate_plugin_config_accepts_good_config_and_string_numbers(tmp_path: Path) -> None:
    config = _cfg(tmp_path, "demo:\n  clientKey: k\n  port: '9090'\n")
    assert validate_plugin_config(config, "demo", Schema) == []


def test_validate_plugin_config_names_key_and_file(tmp_path: Path) -> None:
    config = _cfg(tmp_path, "demo:\n  clientKey: k\n  port: many\n")
    [error] = validate_plugin_config(config, "demo", Schema)
    assert "plugin 'demo'" in error and "'demo.port'" in error
    assert str(tmp_path / "app-config.yaml") in error and "Expected `int`, got `str`" in error


def test_validate_plugin_config_reports_a_missing_required_field(tmp_path: Path) -> None:
    config = _cfg(tmp_path, "demo:\n  port: 1\n")
    [error] = validate_plugin_config(config, "demo", Schema)
    assert "'demo.clientKey'" in error and "missing required field `clientKey`" in error
    config = _cfg(tmp_path, "demo:\n  clientKey: k\n  mirrors:\n    - {}\n")
    [error] = validate_plugin_config(config, "demo", Schema)
    assert "'demo.mirrors[0].url'" in error and str(tmp_path / "app-config.yaml") in error


def test_an_absent_plugin_key_is_checked_as_empty(tmp_path: Path) -> None:
    class AllDefaults(msgspec.Struct):
        size: int = 1

    config = _cfg(tmp_path, "other: 1\n")
    assert validate_plugin_config(config, "demo", AllDefaults) == []
    [error] = validate_plugin_config(config, "demo", Schema)
    assert "'demo.clientKey'" in error


def test_a_schema_that_is_not_a_msgspec_type_is_reported() -> None:
    [error] = validate_plugin_config(Config.from_dict({}), "demo", object())
    assert "plugin 'demo'" in error and "not a msgspec type" in error


# ---------------------------------------------------------------------------- reloading


def test_reload_settings_defaults_and_errors() -> None:
    assert read_reload_settings(Config.from_dict({})) == ReloadSettings()
    cfg = Config.from_dict({"backend": {"config": {"reload": {"enabled": True, "intervalSeconds": "5"}}}})
    assert read_reload_settings(cfg) == ReloadSettings(enabled=True, interval_seconds=5.0)
    with pytest.raises(ConfigError, match="backend.config.reload.pollSeconds"):
        read_reload_settings(Config.from_dict({"backend": {"config": {"reload": {"pollSeconds": 0}}}}))
    with pytest.raises(ConfigError, match="backend.config.reload"):
        read_reload_settings(Config.from_dict({"backend": {"config": {"reload": {"enabeld": True}}}}))


def _touch_later(path: Path, text: str) -> None:
    """Rewrite a file and move its mtime forward, so a change is seen whatever the clock resolution."""
    before = path.stat().st_mtime
    path.write_text(text)
    os.utime(path, (before + 5, before + 5))


async def test_reload_calls_subscribers_with_the_new_config(tmp_path: Path) -> None:
    base = tmp_path / "base.yaml"
    local = tmp_path / "local.yaml"
    base.write_text("app:\n  title: one\n  port: 1\n")
    local.write_text("app:\n  port: 2\n")
    config = ReloadingConfig([base, local], env={})
    seen: list[Config] = []
    unsubscribe = config.subscribe(seen.append)
    assert config.get_string("app.title") == "one" and config.get_number("app.port") == 2

    assert await config.reload() is False  # nothing changed: nobody is called
    base.write_text("app:\n  title: two\n  port: 1\n")
    assert await config.reload() is True
    assert [c.get_string("app.title") for c in seen] == ["two"]
    assert config.get_string("app.title") == "two" and config.source("app.port") == str(local)

    unsubscribe()
    base.write_text("app:\n  title: three\n")
    assert await config.reload() is True
    assert len(seen) == 1 and config.get_string("app.title") == "three"


async def test_a_broken_file_keeps_the_previous_config(tmp_path: Path) -> None:
    path = tmp_path / "app-config.yaml"
    path.write_text("app: {title: ok}\n")
    config = ReloadingConfig([path], env={})
    path.write_text("app: {title: [unclosed\n")
    assert await config.reload() is False
    assert config.get_string("app.title") == "ok"


async def test_validate_can_reject_a_new_config(tmp_path: Path) -> None:
    path = tmp_path / "app-config.yaml"
    path.write_text("app: {port: 1}\n")

    def validate(c: Config) -> None:
        if c.get_number("app.port") > 100:
            raise ConfigError("port too large")

    config = ReloadingConfig([path], env={}, validate=validate)
    path.write_text("app: {port: 1000}\n")
    assert await config.reload() is False and config.get_number("app.port") == 1


async def _wait_for(predicate: Any, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_watching_files_reloads_on_change_and_async_subscribers_run(tmp_path: Path) -> None:
    path = tmp_path / "app-config.yaml"
    path.write_text("backend:\n  config:\n    reload: {enabled: true, pollSeconds: 0.05}\napp: {n: 1}\n")
    config = ReloadingConfig([path], env={})
    seen: list[Any] = []

    async def on_change(new: Config) -> None:
        await asyncio.sleep(0)
        seen.append(new.get("app.n"))

    config.subscribe(on_change)
    await config.start()
    try:
        _touch_later(path, path.read_text().replace("n: 1", "n: 2"))
        await _wait_for(lambda: seen == [2])
        assert config.get_number("app.n") == 2
    finally:
        await config.stop()


async def test_interval_reload_picks_up_changes_the_file_watch_cannot_see(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("first")
    path = tmp_path / "app-config.yaml"
    path.write_text("app:\n  key: {$file: secret.txt}\n")
    config = ReloadingConfig([path], env={})
    seen: list[str] = []
    config.subscribe(lambda c: seen.append(c.get_string("app.key")))
    await config.start(ReloadSettings(enabled=True, watch_files=False, interval_seconds=0.05))
    try:
        secret.write_text("second")
        await _wait_for(lambda: seen == ["second"])
    finally:
        await config.stop()


async def test_start_does_nothing_unless_enabled_and_a_failing_subscriber_is_contained(
    tmp_path: Path,
) -> None:
    path = tmp_path / "app-config.yaml"
    path.write_text("app: {n: 1}\n")
    config = ReloadingConfig([path], env={})
    await config.start()
    assert config._task is None
    calls: list[int] = []

    def broken(_: Config) -> None:
        raise RuntimeError("subscriber bug")

    config.subscribe(broken)
    config.subscribe(lambda c: calls.append(c.get("app.n")))
    path.write_text("app: {n: 2}\n")
    assert await config.reload() is True
    assert calls == [2]
    await config.stop()


# ---------------------------------------------------------------- redact by path


def test_redact_paths_through_arrays_leaving_the_original() -> None:
    data: dict[str, Any] = {
        "backend": {
            "auth": {"keys": [{"secret": "k1"}, {"secret": "k2"}]},
            "db": {"password": "pw", "host": "h"},
        },
        "integrations": {"github": [{"host": "github.com", "token": "t"}]},
    }
    paths = ["backend.db.password", "integrations.github.token", "backend.auth.keys", "does.not.exist", ""]
    out = redact_secrets(data, paths)
    assert out["backend"]["db"] == {"password": "<secret>", "host": "h"}
    assert out["backend"]["auth"]["keys"] == "<secret>"
    assert out["integrations"]["github"] == [{"host": "github.com", "token": "<secret>"}]
    assert data["backend"]["db"]["password"] == "pw"  # original untouched
    assert "does" not in out


def test_redact_config_instance() -> None:
    cfg = Config.from_dict({"a": {"b": "secret", "c": 1}})
    assert redact_secrets(cfg, ["a.b"]) == {"a": {"b": "<secret>", "c": 1}}

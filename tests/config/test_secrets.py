"""kernel.config.secrets: secrets from schemas and key names, redacted or collected for the logs."""

from __future__ import annotations

from typing import Any

import pytest

from kernel.config import (
    SECRET,
    Config,
    is_secret_key,
    plugin_secret_paths,
    redact_secrets,
    schema_secret_paths,
    secret_values,
)
from tests.config.conftest import Schema


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

"""kernel.config.schemas: a plugin's config checked against its config_schema, naming key and file."""

from __future__ import annotations

from pathlib import Path

import msgspec

from kernel.config import Config, load_config, validate_plugin_config
from tests.config.conftest import Schema


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

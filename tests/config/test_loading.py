"""kernel.config.loading: files merged in order, YAML/JSON parsing, APP_CONFIG_* environment overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernel.config import ConfigError, load_config
from tests.config.conftest import load, write

# ---------------------------------------------------------------- loading & merging


def test_single_file(tmp_path: Path) -> None:
    cfg = load(tmp_path, "backend:\n  baseUrl: http://localhost:7007\n  listen:\n    port: 7007\n")
    assert cfg.get("backend.listen.port") == 7007
    assert cfg.get_string("backend.baseUrl") == "http://localhost:7007"
    assert cfg.to_dict() == {"backend": {"baseUrl": "http://localhost:7007", "listen": {"port": 7007}}}


def test_merge_order_later_wins_and_deep_merges(tmp_path: Path) -> None:
    a = write(tmp_path / "a.yaml", "app:\n  title: A\n  nested: {x: 1, y: 2}\nonlyA: true\n")
    b = write(tmp_path / "b.yaml", "app:\n  title: B\n  nested: {y: 3, z: 4}\nonlyB: 1\n")
    cfg = load_config([a, b], env={})
    assert cfg.get("app") == {"title": "B", "nested": {"x": 1, "y": 3, "z": 4}}
    assert cfg.get("onlyA") is True and cfg.get("onlyB") == 1
    assert load_config([b, a], env={}).get("app.title") == "A"


def test_arrays_and_scalars_replace(tmp_path: Path) -> None:
    a = write(tmp_path / "a.yaml", "list: [1, 2, 3]\nobj: {k: v}\nscalar: 1\n")
    b = write(tmp_path / "b.yaml", "list: [9]\nobj: replaced\nscalar: {now: object}\n")
    cfg = load_config([a, b], env={})
    assert cfg.get("list") == [9]
    assert cfg.get("obj") == "replaced"
    assert cfg.get("scalar") == {"now": "object"}
    assert not cfg.has("obj.k")


def test_explicit_null_masks_lower_value(tmp_path: Path) -> None:
    a = write(tmp_path / "a.yaml", "a: {b: 1, c: 2}\n")
    b = write(tmp_path / "b.yaml", "a: {b: null}\n")
    cfg = load_config([a, b], env={})
    assert cfg.get("a") == {"c": 2}
    assert not cfg.has("a.b")


def test_empty_file_is_empty_object(tmp_path: Path) -> None:
    empty = write(tmp_path / "empty.yaml", "")
    comments = write(tmp_path / "comments.yaml", "# nothing here\n")
    cfg = load_config([empty, comments], env={})
    assert cfg.to_dict() == {} and cfg.keys() == []


def test_json_file(tmp_path: Path) -> None:
    a = write(tmp_path / "a.yaml", "x: {a: 1}\n")
    b = write(tmp_path / "b.json", '{"x": {"b": [1, 2]}}')
    assert load_config([a, b], env={}).get("x") == {"a": 1, "b": [1, 2]}


def test_pathlike_and_str_paths(tmp_path: Path) -> None:
    a = write(tmp_path / "a.yaml", "k: 1\n")
    assert load_config([str(a)], env={}).get("k") == 1


def test_yaml_12_booleans_and_no_timestamps(tmp_path: Path) -> None:
    cfg = load(tmp_path, "a: yes\nb: on\nc: true\nd: 2024-01-02\ne: False\n")
    assert cfg.to_dict() == {"a": "yes", "b": "on", "c": True, "d": "2024-01-02", "e": False}


def test_non_string_keys_become_strings(tmp_path: Path) -> None:
    cfg = load(tmp_path, "codes:\n  404: missing\n  true: yes\n")
    assert cfg.get("codes") == {"404": "missing", "true": "yes"}


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="nope.yaml' does not exist"):
        load_config([missing], env={})


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.yaml", "a: 1\nb: [1, 2\nc: 3\n")
    with pytest.raises(ConfigError) as info:
        load_config([bad], env={})
    msg = str(info.value)
    assert str(bad) in msg and "line " in msg


def test_yaml_syntax_error_line_number(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.yaml", "a: 1\nb: 2\n  c: 3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml' at line 3"):
        load_config([bad], env={})


def test_json_syntax_error(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.json", '{\n  "a": 1,\n}')
    with pytest.raises(ConfigError, match=r"bad\.json' at line 3"):
        load_config([bad], env={})


def test_top_level_must_be_object(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must contain an object at top level, got array"):
        load(tmp_path, "- 1\n- 2\n")


# ---------------------------------------------------------------- env overrides


def test_env_override_json_parsing(tmp_path: Path) -> None:
    env = {
        "APP_CONFIG_backend_listen_port": "7008",
        "APP_CONFIG_backend_debug": "true",
        "APP_CONFIG_backend_ratio": "0.5",
        "APP_CONFIG_backend_name": "plain text",
        "APP_CONFIG_backend_list": '["a", "b"]',
        "APP_CONFIG_backend_quoted": '"7"',
        "APP_CONFIG_backend_nan": "NaN",
        "UNRELATED": "x",
    }
    cfg = load(tmp_path, "backend:\n  listen: {port: 7007, host: 0.0.0.0}\n", env=env)
    assert cfg.get("backend.listen") == {"port": 7008, "host": "0.0.0.0"}
    assert cfg.get("backend.debug") is True
    assert cfg.get("backend.ratio") == 0.5
    assert cfg.get("backend.name") == "plain text"
    assert cfg.get("backend.list") == ["a", "b"]
    assert cfg.get("backend.quoted") == "7"
    assert cfg.get("backend.nan") == "NaN"
    assert "UNRELATED" not in cfg.keys()  # noqa: SIM118 - Config is not a mapping


def test_env_override_wins_over_all_files_and_sources(tmp_path: Path) -> None:
    a = write(tmp_path / "a.yaml", "app: {title: A}\n")
    b = write(tmp_path / "b.yaml", "app: {title: B}\n")
    cfg = load_config([a, b], env={"APP_CONFIG_app_title": "Env"})
    assert cfg.get("app.title") == "Env"
    assert cfg.source("app.title") == "env:APP_CONFIG_app_title"


def test_env_override_object_value(tmp_path: Path) -> None:
    cfg = load(tmp_path, "a: {b: {c: 1, d: 2}}\n", env={"APP_CONFIG_a_b": '{"c": 3}'})
    assert cfg.get("a.b") == {"c": 3, "d": 2}


def test_env_override_case_sensitive(tmp_path: Path) -> None:
    env = {"APP_CONFIG_backend_baseUrl": "y", "APP_CONFIG_Backend_x": "1"}
    cfg = load(tmp_path, "backend: {baseUrl: x}\n", env=env)
    assert cfg.get("backend.baseUrl") == "y"
    assert cfg.get("Backend.x") == 1


def test_env_override_without_files() -> None:
    cfg = load_config([], env={"APP_CONFIG_a_b": "1"})
    assert cfg.to_dict() == {"a": {"b": 1}}


def test_env_override_invalid_key() -> None:
    with pytest.raises(ConfigError, match="APP_CONFIG_a__b"):
        load_config([], env={"APP_CONFIG_a__b": "1"})


def test_env_override_conflict() -> None:
    with pytest.raises(ConfigError, match="conflicting"):
        load_config([], env={"APP_CONFIG_a": "1", "APP_CONFIG_a_b": "2"})


def test_env_defaults_to_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_CONFIG_fromOs_value", "1")
    monkeypatch.setenv("KERNEL_TEST_VAR", "v")
    cfg = load_config([write(tmp_path / "a.yaml", "v: ${KERNEL_TEST_VAR}\n")])
    assert cfg.get("fromOs.value") == 1 and cfg.get("v") == "v"

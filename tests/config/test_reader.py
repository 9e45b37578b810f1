"""kernel.config.reader: the Config's typed getters, sub-views, sources, and snapshots for the wire."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from kernel.config import Config, ConfigError, ConfigSnapshot, load_config
from tests.config.conftest import write

# ---------------------------------------------------------------- getters


@pytest.fixture()
def conf(tmp_path: Path) -> tuple[Config, str]:
    path = write(
        tmp_path / "conf" / "app-config.yaml",
        """\
        backend:
          baseUrl: http://localhost
          listen: {port: "abc", host: localhost}
          numeric: "8080"
          ratio: 1.5
          enabled: true
          flagStr: "off"
          cors: {origin: [a, b], methods: [GET, 1]}
        catalog:
          locations:
            - {type: url, target: http://x}
            - {type: file, target: ./y}
          bad: [{type: url}, 3]
        """,
    )
    return load_config([path], env={}), str(path)


def test_get_and_get_optional(conf: tuple[Config, str]) -> None:
    cfg, _ = conf
    assert cfg.get("backend.listen.host") == "localhost"
    assert cfg.get_optional("backend.nope") is None
    assert cfg.get_optional("nope.deeper") is None
    assert set(cfg.get()) == {"backend", "catalog"}
    with pytest.raises(ConfigError, match=r"^Missing required config value at 'backend\.nope'$"):
        cfg.get("backend.nope")


def test_get_returns_copies(conf: tuple[Config, str]) -> None:
    cfg, _ = conf
    cfg.get("backend.cors")["origin"].append("z")
    cfg.to_dict()["backend"]["baseUrl"] = "changed"
    assert cfg.get("backend.cors.origin") == ["a", "b"]
    assert cfg.get("backend.baseUrl") == "http://localhost"
    with pytest.raises(AttributeError):
        cfg._data = {}


def test_get_string(conf: tuple[Config, str]) -> None:
    cfg, path = conf
    assert cfg.get_string("backend.baseUrl") == "http://localhost"
    assert cfg.get_optional_string("backend.missing") is None
    with pytest.raises(ConfigError) as info:
        cfg.get_string("backend.ratio")
    assert str(info.value) == (f"Invalid type in config for key 'backend.ratio' in '{path}', got number, wanted string")
    with pytest.raises(ConfigError, match=r"^Missing required config value at 'backend\.missing'$"):
        cfg.get_string("backend.missing")


def test_get_number(conf: tuple[Config, str]) -> None:
    cfg, path = conf
    assert cfg.get_number("backend.ratio") == 1.5
    assert cfg.get_number("backend.numeric") == 8080 and isinstance(cfg.get_number("backend.numeric"), int)
    assert cfg.get_optional_number("backend.missing") is None
    with pytest.raises(ConfigError) as info:
        cfg.get_number("backend.listen.port")
    assert str(info.value) == (
        f"Invalid type in config for key 'backend.listen.port' in '{path}', got string, wanted number"
    )
    with pytest.raises(ConfigError, match="got boolean, wanted number"):
        cfg.get_number("backend.enabled")
    with pytest.raises(ConfigError, match="got object, wanted number"):
        cfg.get_optional_number("backend.listen")


def test_get_boolean(conf: tuple[Config, str]) -> None:
    cfg, _ = conf
    assert cfg.get_boolean("backend.enabled") is True
    assert cfg.get_boolean("backend.flagStr") is False
    assert cfg.get_optional_boolean("backend.missing") is None
    with pytest.raises(ConfigError, match="'backend.ratio'.*got number, wanted boolean"):
        cfg.get_boolean("backend.ratio")
    with pytest.raises(ConfigError, match="got string, wanted boolean"):
        cfg.get_optional_boolean("backend.baseUrl")


def test_get_string_list(conf: tuple[Config, str]) -> None:
    cfg, path = conf
    assert cfg.get_string_list("backend.cors.origin") == ["a", "b"]
    assert cfg.get_optional_string_list("backend.cors.nope") is None
    with pytest.raises(ConfigError) as info:
        cfg.get_string_list("backend.cors.methods")
    assert str(info.value) == (
        f"Invalid type in config for key 'backend.cors.methods[1]' in '{path}', got number, wanted string"
    )
    with pytest.raises(ConfigError, match="got string, wanted string-array"):
        cfg.get_string_list("backend.baseUrl")


def test_get_config_sub_view(conf: tuple[Config, str]) -> None:
    cfg, path = conf
    backend = cfg.get_config("backend")
    listen = backend.get_config("listen")
    assert listen.keys() == ["port", "host"]
    assert listen.get_string("host") == "localhost"
    assert listen.source("host") == path
    assert backend.has("listen.port") and not backend.has("nope")
    with pytest.raises(ConfigError) as info:
        listen.get_number("port")
    assert "key 'backend.listen.port'" in str(info.value) and path in str(info.value)
    with pytest.raises(ConfigError, match=r"^Missing required config value at 'backend\.listen\.nope'$"):
        listen.get("nope")
    assert cfg.get_optional_config("nothing") is None
    with pytest.raises(ConfigError, match="'backend.baseUrl'.*got string, wanted object"):
        cfg.get_config("backend.baseUrl")


def test_get_config_list(conf: tuple[Config, str]) -> None:
    cfg, path = conf
    locations = cfg.get_config_list("catalog.locations")
    assert [loc.get_string("type") for loc in locations] == ["url", "file"]
    assert locations[1].source("target") == path
    missing = r"^Missing required config value at 'catalog\.locations\[1\]\.nope'$"
    with pytest.raises(ConfigError, match=missing):
        locations[1].get("nope")
    with pytest.raises(ConfigError, match=r"'catalog\.bad\[1\]'.*got number, wanted object"):
        cfg.get_config_list("catalog.bad")
    assert cfg.get_optional_config_list("catalog.none") is None


def test_keys_has_source(tmp_path: Path) -> None:
    a = write(tmp_path / "a.yaml", "x: {a: 1, b: 2}\n")
    b = write(tmp_path / "b.yaml", "x: {b: 3}\n")
    cfg = load_config([a, b], env={"APP_CONFIG_x_c": "4"})
    assert cfg.keys() == ["x"]
    assert cfg.get_config("x").keys() == ["a", "b", "c"]
    assert cfg.source("x.a") == str(a)
    assert cfg.source("x.b") == str(b)
    assert cfg.source("x.c") == "env:APP_CONFIG_x_c"
    assert cfg.source("x.missing") is None
    assert cfg.has("x.a") and not cfg.has("x.a.deeper")


def test_invalid_key(conf: tuple[Config, str]) -> None:
    cfg, _ = conf
    with pytest.raises(ConfigError, match="Invalid config key 'a..b'"):
        cfg.get("a..b")


def test_from_dict() -> None:
    data: dict[str, Any] = {"a": {"b": [1, 2], "c": None}, "s": "x"}
    cfg = Config.from_dict(data, source="test")
    data["a"]["b"].append(3)
    assert cfg.get("a") == {"b": [1, 2]}
    assert cfg.source("a.b") == "test"
    assert Config.from_dict({"k": 1}).source("k") == "<inline>"
    with pytest.raises(ConfigError, match="key 's' in 'test', got string, wanted number"):
        cfg.get_number("s")


# ---------------------------------------------------------------- snapshots for the wire


@pytest.mark.parametrize("codec", ["json", "msgpack"])
def test_a_snapshot_round_trips_data_and_the_source_of_every_key(tmp_path: Path, codec: str) -> None:
    a = write(tmp_path / "a.yaml", "x: {a: 1, list: [1, {k: v}]}\nport: nope\n")
    b = write(tmp_path / "b.yaml", "x: {b: two}\n")
    cfg = load_config([a, b], env={"APP_CONFIG_x_c": "true"})
    mod = msgspec.json if codec == "json" else msgspec.msgpack
    snapshot = mod.decode(mod.encode(cfg.snapshot()), type=ConfigSnapshot)
    back = Config.from_snapshot(snapshot)
    assert back.to_dict() == cfg.to_dict()
    keys = ("x", "x.a", "x.b", "x.c", "x.list", "port")
    assert (
        [back.source(k) for k in keys]
        == [cfg.source(k) for k in keys]
        == [
            "env:APP_CONFIG_x_c",  # the last layer that set a key is its source
            str(a),
            str(b),
            "env:APP_CONFIG_x_c",
            str(a),
            str(a),
        ]
    )
    with pytest.raises(ConfigError, match=rf"key 'port' in '{a}', got string, wanted number"):
        back.get_number("port")  # error messages still name the file


def test_a_snapshot_is_a_frozen_copy(tmp_path: Path) -> None:
    cfg = Config.from_dict({"a": {"b": [1]}}, source="here")
    snapshot = cfg.snapshot()
    snapshot.data["a"]["b"].append(2)
    assert cfg.get("a.b") == [1]
    with pytest.raises(AttributeError):
        snapshot.data = {}  # type: ignore[misc]
    back = Config.from_snapshot(snapshot)
    snapshot.data["a"]["b"].append(3)
    assert back.get("a.b") == [1, 2] and back.source("a.b") == "here"


def test_a_sub_view_snapshots_as_a_root_config(tmp_path: Path) -> None:
    path = write(tmp_path / "app-config.yaml", "backend:\n  listen: {port: x}\nitems: [{name: n, port: y}]\n")
    cfg = load_config([path], env={})
    listen = Config.from_snapshot(cfg.get_config("backend").snapshot())
    assert listen.to_dict() == {"listen": {"port": "x"}} and listen.source("listen.port") == str(path)
    [item] = cfg.get_config_list("items")
    copied = Config.from_snapshot(item.snapshot())
    assert copied.get("name") == "n" and copied.source("port") == str(path)

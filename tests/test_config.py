"""Tests for kernel.config: loading, merging, substitution, directives, env overrides, getters."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from kernel.config import Config, ConfigError, load_config


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Config:
    return load_config([write(tmp_path / "app-config.yaml", text)], env=env or {})


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


# ---------------------------------------------------------------- substitution


def test_whole_value_substitution(tmp_path: Path) -> None:
    cfg = load(tmp_path, "a: ${HOST}\nb: ${EMPTY}\n", env={"HOST": "example.com", "EMPTY": ""})
    assert cfg.get("a") == "example.com"
    assert cfg.get("b") == ""


def test_unset_whole_value_is_dropped_not_masking(tmp_path: Path) -> None:
    base = write(tmp_path / "base.yaml", "db: {password: fallback, user: u}\n")
    local = write(tmp_path / "local.yaml", "db:\n  password: ${DB_PASSWORD}\n  other: ${UNSET}\n")
    cfg = load_config([base, local], env={})
    assert cfg.get("db") == {"password": "fallback", "user": "u"}
    assert not cfg.has("db.other")
    assert cfg.get_optional("db.other") is None
    assert cfg.source("db.password") == str(base)


def test_unset_var_in_list_item_is_dropped(tmp_path: Path) -> None:
    cfg = load(tmp_path, "items: [a, '${NOPE}', b]\n")
    assert cfg.get("items") == ["a", "b"]


def test_substitution_inside_longer_string(tmp_path: Path) -> None:
    cfg = load(tmp_path, "url: http://${HOST}:${PORT}/api\n", env={"HOST": "h", "PORT": "80"})
    assert cfg.get("url") == "http://h:80/api"


def test_unset_var_inside_longer_string_is_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, "backend:\n  url: http://${MISSING_HOST}/x\n")
    msg = str(info.value)
    assert "'backend.url'" in msg and "app-config.yaml" in msg and "'MISSING_HOST'" in msg


def test_default_substitution(tmp_path: Path) -> None:
    text = "a: ${A:-fallback}\nb: ${B:-fallback}\nc: ${C:-fallback}\nd: x-${D:-def}-y\ne: ${E:-}\n"
    cfg = load(tmp_path, text, env={"A": "set", "C": ""})
    assert cfg.get("a") == "set"
    assert cfg.get("b") == "fallback"
    assert cfg.get("c") == "fallback"  # empty counts as unset for :-
    assert cfg.get("d") == "x-def-y"
    assert cfg.get("e") == ""


def test_escape_produces_literal(tmp_path: Path) -> None:
    cfg = load(tmp_path, "a: $${HOME}\nb: pre $${X} ${Y}\nc: $${X:-d}\n", env={"HOME": "/root", "Y": "y"})
    assert cfg.get("a") == "${HOME}"
    assert cfg.get("b") == "pre ${X} y"
    assert cfg.get("c") == "${X:-d}"


def test_invalid_substitution(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"key 'a' in .*: Invalid substitution '\$\{not valid\}'"):
        load(tmp_path, "a: ${not valid}\n")


def test_substitution_not_applied_to_non_strings(tmp_path: Path) -> None:
    cfg = load(tmp_path, "n: 5\nb: false\n")
    assert cfg.get("n") == 5 and cfg.get("b") is False


# ---------------------------------------------------------------- directives


def test_env_directive(tmp_path: Path) -> None:
    cfg = load(tmp_path, "a: {$env: TOKEN}\nb: {$env: UNSET}\n", env={"TOKEN": "s3cret"})
    assert cfg.get("a") == "s3cret"
    assert not cfg.has("b")


def test_file_directive_relative_to_config_dir(tmp_path: Path) -> None:
    write(tmp_path / "conf" / "secrets" / "key.pem", "-----KEY-----\n")
    cfg_file = write(tmp_path / "conf" / "app-config.yaml", "auth:\n  key:\n    $file: secrets/key.pem\n")
    cfg = load_config([cfg_file], env={})
    assert cfg.get("auth.key") == "-----KEY-----\n"


def test_file_directive_missing_names_key_and_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, "auth:\n  key: {$file: nope.pem}\n")
    msg = str(info.value)
    assert "'auth.key'" in msg and "app-config.yaml" in msg and "nope.pem" in msg


def test_file_directive_path_substitution(tmp_path: Path) -> None:
    write(tmp_path / "d" / "f.txt", "hi")
    cfg = load(tmp_path, "a: {$file: '${DIR}/f.txt'}\n", env={"DIR": "d"})
    assert cfg.get("a") == "hi"


def test_include_directive(tmp_path: Path) -> None:
    write(tmp_path / "conf" / "db.yaml", "client: pg\nconnection:\n  host: ${DB_HOST:-localhost}\n")
    cfg_file = write(tmp_path / "conf" / "app-config.yaml", "backend:\n  database: {$include: db.yaml}\n")
    cfg = load_config([cfg_file], env={})
    assert cfg.get("backend.database") == {"client": "pg", "connection": {"host": "localhost"}}
    assert cfg.source("backend.database.client") == str(cfg_file)


def test_include_json(tmp_path: Path) -> None:
    write(tmp_path / "x.json", '{"a": [1, 2]}')
    assert load(tmp_path, "inc: {$include: x.json}\n").get("inc.a") == [1, 2]


def test_include_with_dot_path(tmp_path: Path) -> None:
    write(tmp_path / "shared.yaml", "outer:\n  inner:\n    value: 42\n    other: x\n")
    text = "a: {$include: 'shared.yaml#outer.inner.value'}\nb: {$include: 'shared.yaml#outer'}\n"
    cfg = load(tmp_path, text)
    assert cfg.get("a") == 42
    assert cfg.get("b") == {"inner": {"value": 42, "other": "x"}}


def test_include_bad_dot_path(tmp_path: Path) -> None:
    write(tmp_path / "shared.yaml", "outer: {inner: 1}\n")
    with pytest.raises(ConfigError) as info:
        load(tmp_path, "sel:\n  x: {$include: 'shared.yaml#outer.missing'}\n")
    msg = str(info.value)
    assert "outer.missing" in msg and "'sel.x'" in msg and "app-config.yaml" in msg


def test_include_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, "x: {$include: gone.yaml}\n")
    msg = str(info.value)
    assert "gone.yaml" in msg and "'x'" in msg and "app-config.yaml" in msg


def test_include_syntax_error(tmp_path: Path) -> None:
    write(tmp_path / "broken.yaml", "a: [\n")
    expected = r"key 'x' in '.*app-config\.yaml': Invalid \$include: .*broken\.yaml.* line 2"
    with pytest.raises(ConfigError, match=expected):
        load(tmp_path, "x: {$include: broken.yaml}\n")


def test_nested_include_relative_to_included_file(tmp_path: Path) -> None:
    write(tmp_path / "sub" / "leaf.txt", "leaf")
    write(tmp_path / "sub" / "mid.yaml", "text: {$file: leaf.txt}\n")
    assert load(tmp_path, "m: {$include: sub/mid.yaml}\n").get("m.text") == "leaf"


def test_include_cycle(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "b: {$include: b.yaml}\n")
    write(tmp_path / "b.yaml", "a: {$include: a.yaml}\n")
    with pytest.raises(ConfigError, match="Circular"):
        load(tmp_path, "x: {$include: a.yaml}\n")


def test_directive_must_be_only_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"key 'x' in .*: Directive '\$env' must be the only key"):
        load(tmp_path, "x: {$env: A, other: 1}\n")


def test_unknown_directive(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"Unknown config directive '\$inlcude'"):
        load(tmp_path, "x: {$inlcude: a.yaml}\n")


def test_directive_requires_string(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expects a string, got number"):
        load(tmp_path, "x: {$file: 3}\n")


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

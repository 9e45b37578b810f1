"""kernel.config.directives: ${VAR} substitution and the $env, $file, $include directives."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernel.config import ConfigError, load_config
from tests.config.conftest import load, write

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

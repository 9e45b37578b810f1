"""``load_config``: config files (or URLs: ``kernel.config.remote``) merged in order, then ``APP_CONFIG_*`` overrides.

Which keys a ``$env``, ``$file`` or ``${VAR}`` produced is kept (``Config.derived``): scoping treats
them as secret. Objects deep-merge and later layers win; arrays and scalars replace; an explicit null masks a
lower layer's value. ``APP_CONFIG_a_b=value`` sets ``a.b`` (the value is parsed as JSON when it
is JSON, else kept as a string); each variable is its own layer, applied in name order.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from kernel.config.directives import ABSENT, Context, transform
from kernel.config.parsing import parse_text, type_name
from kernel.config.reader import Config, Sources, prune, record_sources
from kernel.config.remote import fetch_text, is_url, suffix_of
from kernel.errors import ConfigError
from kernel.settings import merge

__all__ = ["ENV_PREFIX", "load_config"]

ENV_PREFIX: Final = "APP_CONFIG_"
_ENV_PART_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_INDEX_RE: Final = re.compile(r"\[\d+\]")


def _parse_env_value(raw: str) -> Any:
    def reject(const: str) -> Any:
        raise ValueError(const)

    try:
        return json.loads(raw, parse_constant=reject)
    except ValueError:
        return raw


def _env_layers(env: Mapping[str, str]) -> list[tuple[str, dict[str, Any]]]:
    """One layer per APP_CONFIG_a_b_c variable (sorted by name), each {a: {b: {c: value}}}."""
    layers: list[tuple[str, dict[str, Any]]] = []
    seen: Sources = {}
    for name in sorted(n for n in env if n.startswith(ENV_PREFIX)):
        parts = tuple(name[len(ENV_PREFIX) :].split("_"))
        if not all(_ENV_PART_RE.fullmatch(p) for p in parts):
            raise ConfigError(f"Invalid config key in environment variable '{name}'")
        for other, other_name in seen.items():
            if parts[: len(other)] == other or other[: len(parts)] == parts:
                raise ConfigError(f"Environment variables '{other_name}' and '{name}' set conflicting keys")
        seen[parts] = name
        layer: Any = _parse_env_value(env[name])
        for part in reversed(parts):
            layer = {part: layer}
        layers.append((f"env:{name}", layer))
    return layers


def _derived_path(key: str) -> tuple[str, ...]:
    """``a.b[0].c`` as the key path ``("a", "b", "c")`` (arrays transparent)."""
    return tuple(_INDEX_RE.sub("", key).split("."))


def _load_file(
    path_like: str | os.PathLike[str], env: Mapping[str, str], derived: set[str]
) -> tuple[str, dict[str, Any]]:
    display = os.fspath(path_like)
    path = Path(display)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"Config file '{display}' does not exist") from None
    except OSError as e:
        raise ConfigError(f"Unable to read config file '{display}': {e.strerror or e}") from None
    ctx = Context(path, display, env, (path.resolve(),), derived)
    data = transform(parse_text(text, path, display), "", ctx)
    if data is ABSENT:
        data = {}
    if not isinstance(data, dict):
        got = type_name(data)
        raise ConfigError(f"Config file '{display}' must contain an object at top level, got {got}")
    return display, data


def _load_url(url: str, env: Mapping[str, str], derived: set[str]) -> tuple[str, dict[str, Any]]:
    text = fetch_text(url)
    path = Path("remote-config" + suffix_of(url))  # for the parser's choice only: nothing is read from it
    ctx = Context(path, url, env, (), derived, remote=True)
    data = transform(parse_text(text, path, url), "", ctx)
    if data is ABSENT:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"Config from '{url}' must contain an object at top level, got {type_name(data)}")
    return url, data


def load_config(
    paths: Sequence[str | os.PathLike[str]], env: Mapping[str, str] | None = None, *, remote: bool = True
) -> Config:
    """Load, transform and merge config files (and URLs, unless ``remote`` is false) in order, then apply
    APP_CONFIG_* overrides."""
    env = os.environ if env is None else env
    derived: set[str] = set()
    layers = []
    for p in paths:
        location = os.fspath(p)
        if is_url(location) and not remote:
            raise ConfigError(f"Config location '{location}' is a URL, but remote config is not enabled")
        layers.append(_load_url(location, env, derived) if is_url(location) else _load_file(p, env, derived))
    layers.extend(_env_layers(env))
    merged: dict[str, Any] = {}
    sources: Sources = {}
    for source, layer in layers:
        merged = merge(merged, layer)
        record_sources(layer, source, (), sources)
    return Config(prune(merged), sources, derived=frozenset(_derived_path(k) for k in derived if k))

"""Backstage-style app-config: YAML/JSON files, merging, substitution, directives, env overrides."""

from __future__ import annotations

import copy
import enum
import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar, cast

import msgspec
import yaml

__all__ = ["ENV_PREFIX", "SECRET", "Config", "ConfigError", "load_config", "merge", "read_section"]

ENV_PREFIX: Final = "APP_CONFIG_"
SECRET: Final = "<secret>"

_DIRECTIVES: Final = frozenset({"$env", "$file", "$include"})
_SUBST_RE: Final = re.compile(r"\$?\$\{([^{}]*)\}")
_SUBST_BODY_RE: Final = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?::-(.*))?", re.DOTALL)
_ENV_PART_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_INT_RE: Final = re.compile(r"[+-]?\d+")
_FLOAT_RE: Final = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_TRUE: Final = frozenset({"true", "yes", "y", "on", "1"})
_FALSE: Final = frozenset({"false", "no", "n", "off", "0"})


class ConfigError(Exception):
    """Raised for any problem loading or reading configuration."""


class _Absent(enum.Enum):
    ABSENT = 0


_ABSENT: Final = _Absent.ABSENT


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans (only true/false) and timestamps kept as strings."""


_BOOL_TAG: Final = "tag:yaml.org,2002:bool"
_Loader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in entries if tag not in (_BOOL_TAG, "tag:yaml.org,2002:timestamp")]
    for ch, entries in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


# ---------------------------------------------------------------------------- parsing


_TYPE_NAMES: Final = (
    (type(None), "null"),
    (bool, "boolean"),
    ((int, float), "number"),
    (str, "string"),
    (list, "array"),
    (dict, "object"),
)


def _type_name(value: Any) -> str:
    """JSON-ish type name used in error messages (bool is 'boolean', never 'number')."""
    return next((name for t, name in _TYPE_NAMES if isinstance(value, t)), type(value).__name__)


def _parse(text: str, path: Path, display: str) -> Any:
    """Parse YAML (or JSON for *.json); an empty document is an empty object."""
    if not text.strip():
        return {}
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            where = f"at line {e.lineno}, column {e.colno}"
            raise ConfigError(f"Failed to parse '{display}' {where}: {e.msg}") from None
    else:
        try:
            data = yaml.load(text, Loader=_Loader)
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ConfigError(f"Failed to parse '{display}'{where}: {e.problem or e.context}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"Failed to parse '{display}': {e}") from None
    return {} if data is None else data


# ---------------------------------------------------------------------------- transforms


@dataclass(frozen=True)
class _Ctx:
    file: Path  # file being transformed; relative directive paths resolve against its directory
    display: str  # how that file is named in messages
    env: Mapping[str, str]
    stack: tuple[Path, ...]  # resolved files currently being included (cycle detection)


def _child(key: str, part: str | int) -> str:
    if isinstance(part, int):
        return f"{key}[{part}]"
    return f"{key}.{part}" if key else part


def _fail(ctx: _Ctx, key: str, msg: str) -> ConfigError:
    return ConfigError(f"Error in config key '{key or '<root>'}' in '{ctx.display}': {msg}")


def _norm_key(key: Any) -> str:
    return key if isinstance(key, str) else json.dumps(key)


def _transform(value: Any, key: str, ctx: _Ctx) -> Any:
    """Apply substitutions and directives; returns _ABSENT for values that vanish."""
    if isinstance(value, str):
        return _substitute(value, key, ctx)
    if isinstance(value, dict):
        directive = _directive_of(value, key, ctx)
        if directive is not None:
            return _apply_directive(directive[0], directive[1], key, ctx)
        out: dict[str, Any] = {}
        for k, v in value.items():
            name = _norm_key(k)
            res = _transform(v, _child(key, name), ctx)
            if res is not _ABSENT:
                out[name] = res
        return out
    if isinstance(value, list):
        items = (_transform(v, _child(key, i), ctx) for i, v in enumerate(value))
        return [v for v in items if v is not _ABSENT]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    raise _fail(ctx, key, f"Unsupported value of type {type(value).__name__}")


def _directive_of(value: dict[Any, Any], key: str, ctx: _Ctx) -> tuple[str, Any] | None:
    found = [k for k in value if k in _DIRECTIVES]
    if found:
        if len(value) != 1:
            raise _fail(ctx, key, f"Directive '{found[0]}' must be the only key in its mapping")
        return found[0], value[found[0]]
    only = next(iter(value)) if len(value) == 1 else None
    if isinstance(only, str) and re.fullmatch(r"\$[A-Za-z]\w*", only):
        raise _fail(ctx, key, f"Unknown config directive '{only}'")
    return None


def _apply_directive(name: str, arg: Any, key: str, ctx: _Ctx) -> Any:
    if not isinstance(arg, str):
        raise _fail(ctx, key, f"Directive '{name}' expects a string, got {_type_name(arg)}")
    if name == "$env":
        val = ctx.env.get(arg.strip())
        return _ABSENT if val is None else val
    target = _substitute(arg, key, ctx)
    if not isinstance(target, str) or not target.strip():
        raise _fail(ctx, key, f"Directive '{name}' has an empty path")
    if name == "$file":
        try:
            return (ctx.file.parent / target).read_text(encoding="utf-8")
        except OSError as e:
            raise _fail(ctx, key, f"Unable to read $file '{target}': {e.strerror or e}") from None
    return _include(target, key, ctx)


def _include(target: str, key: str, ctx: _Ctx) -> Any:
    file_part, _, selector = target.partition("#")
    path = ctx.file.parent / file_part
    resolved = path.resolve()
    if resolved in ctx.stack:
        raise _fail(ctx, key, f"Circular $include of '{file_part}'")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise _fail(ctx, key, f"Unable to read $include '{file_part}': {e.strerror or e}") from None
    try:
        data = _parse(text, path, str(path))
    except ConfigError as e:
        raise _fail(ctx, key, f"Invalid $include: {e}") from None
    for part in selector.split(".") if selector else ():
        if not isinstance(data, dict) or part not in data:
            raise _fail(ctx, key, f"Path '{selector}' not found in $include '{file_part}'")
        data = data[part]
    return _transform(data, key, _Ctx(path, str(path), ctx.env, (*ctx.stack, resolved)))


def _lookup_var(body: str, key: str, ctx: _Ctx) -> tuple[str, Any]:
    """(variable name, value or default or _ABSENT) for the body of a ${...}."""
    m = _SUBST_BODY_RE.fullmatch(body)
    if m is None:
        raise _fail(ctx, key, f"Invalid substitution '${{{body}}}'")
    name, default = m.group(1), m.group(2)
    val = ctx.env.get(name)
    if default is not None and not val:
        return name, default
    return name, _ABSENT if val is None else val


def _substitute(text: str, key: str, ctx: _Ctx) -> Any:
    """Expand ${VAR}, ${VAR:-default} and the $${...} escape in one string value."""
    whole = _SUBST_RE.fullmatch(text)
    if whole is not None and not text.startswith("$$"):
        return _lookup_var(whole.group(1), key, ctx)[1]

    def repl(m: re.Match[str]) -> str:
        if m.group(0).startswith("$$"):
            return m.group(0)[1:]
        name, val = _lookup_var(m.group(1), key, ctx)
        if val is _ABSENT:
            raise _fail(ctx, key, f"environment variable '{name}' used in '{text}' is not set")
        return str(val)

    return _SUBST_RE.sub(repl, text)


# ---------------------------------------------------------------------------- merging

_Sources = dict[tuple[str, ...], str]


def merge(base: Any, over: Any) -> Any:
    """Objects deep-merge; everything else (arrays, scalars, null) replaces."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = merge(base[k], v) if k in base else v
        return out
    return over


def _prune(value: Any) -> Any:
    """Drop null-valued object keys (an explicit null masks lower-priority values)."""
    if isinstance(value, dict):
        return {k: _prune(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def _record(data: dict[str, Any], source: str, prefix: tuple[str, ...], out: _Sources) -> None:
    for k, v in data.items():
        out[(*prefix, k)] = source
        if isinstance(v, dict):
            _record(v, source, (*prefix, k), out)


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
    seen: _Sources = {}
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


def _load_file(path_like: str | os.PathLike[str], env: Mapping[str, str]) -> tuple[str, dict[str, Any]]:
    display = os.fspath(path_like)
    path = Path(display)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"Config file '{display}' does not exist") from None
    except OSError as e:
        raise ConfigError(f"Unable to read config file '{display}': {e.strerror or e}") from None
    ctx = _Ctx(path, display, env, (path.resolve(),))
    data = _transform(_parse(text, path, display), "", ctx)
    if data is _ABSENT:
        data = {}
    if not isinstance(data, dict):
        got = _type_name(data)
        raise ConfigError(f"Config file '{display}' must contain an object at top level, got {got}")
    return display, data


def load_config(paths: Sequence[str | os.PathLike[str]], env: Mapping[str, str] | None = None) -> Config:
    """Load, transform and merge config files in order, then apply APP_CONFIG_* overrides."""
    env = os.environ if env is None else env
    layers = [_load_file(p, env) for p in paths]
    layers.extend(_env_layers(env))
    merged: dict[str, Any] = {}
    sources: _Sources = {}
    for source, layer in layers:
        merged = merge(merged, layer)
        _record(layer, source, (), sources)
    return Config(_prune(merged), sources)


# ---------------------------------------------------------------------------- reading


def _as_string(value: Any) -> Any:
    return value if isinstance(value, str) else _ABSENT


def _as_number(value: Any) -> Any:
    if isinstance(value, bool):
        return _ABSENT
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        text = value.strip()
        if _INT_RE.fullmatch(text):
            return int(text)
        if _FLOAT_RE.fullmatch(text) and math.isfinite(num := float(text)):
            return num
    return _ABSENT


def _as_boolean(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    return _ABSENT


class Config:
    """Immutable view over merged config data that remembers each key's source."""

    __slots__ = ("_base", "_data", "_fixed", "_prefix", "_sources")

    _data: dict[str, Any]
    _sources: Mapping[tuple[str, ...], str]
    _prefix: str
    _base: tuple[str, ...]
    _fixed: str | None

    def __init__(
        self,
        data: dict[str, Any],
        sources: Mapping[tuple[str, ...], str],
        *,
        prefix: str = "",
        base: tuple[str, ...] = (),
        fixed: str | None = None,
    ) -> None:
        init = object.__setattr__
        init(self, "_data", data)
        init(self, "_sources", sources)
        init(self, "_prefix", prefix)
        init(self, "_base", base)
        init(self, "_fixed", fixed)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Config is immutable")

    def __repr__(self) -> str:
        return f"Config({self._prefix or '<root>'}, keys={self.keys()})"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<inline>") -> Config:
        """Build a Config from plain data; every key is attributed to `source`."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"Config data must be an object, got {_type_name(data)}")
        pruned = _prune(copy.deepcopy(dict(data)))
        sources: _Sources = {}
        _record(pruned, source, (), sources)
        return cls(pruned, sources)

    # -- internals

    @staticmethod
    def _parts(key: str) -> tuple[str, ...]:
        parts = tuple(key.split("."))
        if not all(parts):
            raise ConfigError(f"Invalid config key '{key}'")
        return parts

    def _full(self, key: str | None) -> str:
        if not key:
            return self._prefix
        return f"{self._prefix}.{key}" if self._prefix else key

    def _find(self, key: str | None) -> Any:
        node: Any = self._data
        for part in self._parts(key) if key else ():
            if not isinstance(node, dict) or part not in node:
                return _ABSENT
            node = node[part]
        return node

    def _source_of(self, key: str | None) -> str | None:
        if self._fixed is not None:
            return self._fixed
        return self._sources.get((*self._base, *(self._parts(key) if key else ())))

    def _missing(self, key: str | None) -> ConfigError:
        return ConfigError(f"Missing required config value at '{self._full(key)}'")

    def _type_error(self, full: str, source: str | None, value: Any, wanted: str) -> ConfigError:
        where = f" in '{source}'" if source else ""
        got = _type_name(value)
        return ConfigError(f"Invalid type in config for key '{full}'{where}, got {got}, wanted {wanted}")

    def _read(self, key: str, wanted: str, convert: Callable[[Any], Any], required: bool) -> Any:
        value = self._find(key)
        if value is _ABSENT:
            if required:
                raise self._missing(key)
            return None
        out = convert(value)
        if out is _ABSENT:
            raise self._type_error(self._full(key), self._source_of(key), value, wanted)
        return out

    def _read_list(self, key: str, item: type, required: bool) -> Any:
        wanted = "string" if item is str else "object"
        value = self._read(key, f"{wanted}-array", lambda v: v if isinstance(v, list) else _ABSENT, required)
        for i, elem in enumerate(value or ()):
            if not isinstance(elem, item):
                raise self._type_error(f"{self._full(key)}[{i}]", self._source_of(key), elem, wanted)
        return value

    # -- public API

    def keys(self) -> list[str]:
        """Top-level keys of this view."""
        return list(self._data)

    def has(self, key: str) -> bool:
        return self._find(key) is not _ABSENT

    def source(self, key: str | None = None) -> str | None:
        """Where a key's value came from: a file path or 'env:APP_CONFIG_...'; None if unset."""
        if key and not self.has(key):
            return None
        return self._source_of(key)

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self._data)

    def get(self, key: str | None = None) -> Any:
        value = self._find(key)
        if value is _ABSENT:
            raise self._missing(key)
        return copy.deepcopy(value)

    def get_optional(self, key: str | None = None) -> Any | None:
        value = self._find(key)
        return None if value is _ABSENT else copy.deepcopy(value)

    def get_string(self, key: str) -> str:
        return str(self._read(key, "string", _as_string, True))

    def get_optional_string(self, key: str) -> str | None:
        value = self._read(key, "string", _as_string, False)
        return None if value is None else str(value)

    def get_number(self, key: str) -> int | float:
        """Number value; numeric strings (e.g. from ${VAR}) are converted. Booleans are rejected."""
        return cast(float, self._read(key, "number", _as_number, True))

    def get_optional_number(self, key: str) -> int | float | None:
        return cast("float | None", self._read(key, "number", _as_number, False))

    def get_boolean(self, key: str) -> bool:
        """Boolean value; strings like 'true'/'false'/'yes'/'no'/'on'/'off'/'1'/'0' are converted."""
        return bool(self._read(key, "boolean", _as_boolean, True))

    def get_optional_boolean(self, key: str) -> bool | None:
        value = self._read(key, "boolean", _as_boolean, False)
        return None if value is None else bool(value)

    def get_string_list(self, key: str) -> list[str]:
        return list(self._read_list(key, str, True))

    def get_optional_string_list(self, key: str) -> list[str] | None:
        value = self._read_list(key, str, False)
        return None if value is None else list(value)

    def get_config(self, key: str) -> Config:
        value = self._read(key, "object", lambda v: v if isinstance(v, dict) else _ABSENT, True)
        return self._sub(key, value)

    def get_optional_config(self, key: str) -> Config | None:
        value = self._read(key, "object", lambda v: v if isinstance(v, dict) else _ABSENT, False)
        return None if value is None else self._sub(key, value)

    def get_config_list(self, key: str) -> list[Config]:
        value = self._read_list(key, dict, True)
        return self._sub_list(key, value)

    def get_optional_config_list(self, key: str) -> list[Config] | None:
        value = self._read_list(key, dict, False)
        return None if value is None else self._sub_list(key, value)

    def _sub(self, key: str, data: dict[str, Any]) -> Config:
        base = (*self._base, *self._parts(key))
        return Config(data, self._sources, prefix=self._full(key), base=base, fixed=self._fixed)

    def _sub_list(self, key: str, items: list[dict[str, Any]]) -> list[Config]:
        source = self._source_of(key)
        full = self._full(key)
        return [Config(d, self._sources, prefix=f"{full}[{i}]", fixed=source) for i, d in enumerate(items)]


_T = TypeVar("_T")


class _HasGetOptional(Protocol):
    def get_optional(self, key: str) -> Any: ...


def read_section(config: _HasGetOptional, key: str, type_: type[_T]) -> _T:
    """The config subtree at ``key`` converted to a msgspec type; a mistake names the full key.

    Strings convert to numbers and booleans (``${PORT}`` is always a string).
    """
    raw = config.get_optional(key)
    try:
        return msgspec.convert(raw if raw is not None else {}, type_, strict=False)
    except msgspec.ValidationError as exc:
        msg = str(exc).replace("`$.", f"`{key}.").replace("`$`", f"`{key}`")
        raise ConfigError(f"Invalid config under '{key}': {msg}") from None

"""``Config``: an immutable view over merged config data with typed getters; each key remembers its source.

Getters convert where a value from ``${VAR}`` would be a string: ``get_number`` accepts numeric
strings, ``get_boolean`` accepts true/false/yes/no/on/off/1/0. A wrong type is a ``ConfigError``
naming the full key and the file (or ``env:APP_CONFIG_...`` variable) it came from.
``snapshot``/``from_snapshot`` carry a config, sources included, over the wire.

A scoped config (``kernel.config.scoping``) also knows which key paths were withheld from it and
why: reading one of them, or below one, is a ``ConfigError`` saying so, never a silent absence.
Reading a parent of a withheld key gives the parent without it. ``derived`` are the key paths whose
value a ``$env``, ``$file`` or ``${VAR}`` produced (``load_config`` records them; scoping treats
them as secret).
"""

from __future__ import annotations

import copy
import enum
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Final, cast

import msgspec

from kernel.config.parsing import type_name
from kernel.errors import ConfigError

__all__ = ["Config", "ConfigSnapshot", "Hidden", "Sources", "prune", "record_sources"]

_INT_RE: Final = re.compile(r"[+-]?\d+")
_FLOAT_RE: Final = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_TRUE: Final = frozenset({"true", "yes", "y", "on", "1"})
_FALSE: Final = frozenset({"false", "no", "n", "off", "0"})

#: key path -> where its value came from (a file as given, or ``env:APP_CONFIG_...``)
Sources = dict[tuple[str, ...], str]
#: key path (arrays transparent) -> why it was withheld from this config
Hidden = dict[tuple[str, ...], str]


class _Absent(enum.Enum):
    ABSENT = 0


_ABSENT: Final = _Absent.ABSENT


def prune(value: Any) -> Any:
    """Drop null-valued object keys (an explicit null masks lower-priority values)."""
    if isinstance(value, dict):
        return {k: prune(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [prune(v) for v in value]
    return value


def record_sources(data: dict[str, Any], source: str, prefix: tuple[str, ...], out: Sources) -> None:
    """Attribute every key path of ``data`` (objects recursively, under ``prefix``) to ``source``."""
    for k, v in data.items():
        out[(*prefix, k)] = source
        if isinstance(v, dict):
            record_sources(v, source, (*prefix, k), out)


class ConfigSnapshot(msgspec.Struct, frozen=True):
    """A ``Config`` as plain data for msgspec (JSON or msgpack): its data and the source of each key path."""

    data: dict[str, Any]
    sources: list[tuple[list[str], str]]
    #: the key paths withheld from it (``kernel.config.scoping``), each with why
    hidden: list[tuple[list[str], str]] = []


# ---------------------------------------------------------------------------- conversions


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


def _as_object(value: Any) -> Any:
    return value if isinstance(value, dict) else _ABSENT


class Config:
    """Immutable view over merged config data that remembers each key's source."""

    __slots__ = ("_base", "_data", "_fixed", "_hidden", "_prefix", "_sources", "derived")

    _data: dict[str, Any]
    _sources: Mapping[tuple[str, ...], str]
    _prefix: str
    _base: tuple[str, ...]
    _fixed: str | None
    _hidden: Mapping[tuple[str, ...], str]
    #: key paths whose value a ``$env``, ``$file`` or ``${VAR}`` produced (arrays transparent)
    derived: frozenset[tuple[str, ...]]

    def __init__(
        self,
        data: dict[str, Any],
        sources: Mapping[tuple[str, ...], str],
        *,
        prefix: str = "",
        base: tuple[str, ...] = (),
        fixed: str | None = None,
        hidden: Mapping[tuple[str, ...], str] | None = None,
        derived: frozenset[tuple[str, ...]] = frozenset(),
    ) -> None:
        init = object.__setattr__
        init(self, "_data", data)
        init(self, "_sources", sources)
        init(self, "_prefix", prefix)
        init(self, "_base", base)
        init(self, "_fixed", fixed)
        init(self, "_hidden", hidden or {})
        init(self, "derived", derived)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Config is immutable")

    def __repr__(self) -> str:
        return f"Config({self._prefix or '<root>'}, keys={self.keys()})"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<inline>") -> Config:
        """Build a Config from plain data; every key is attributed to `source`."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"Config data must be an object, got {type_name(data)}")
        pruned = prune(copy.deepcopy(dict(data)))
        sources: Sources = {}
        record_sources(pruned, source, (), sources)
        return cls(pruned, sources)

    # -- over the wire

    def snapshot(self) -> ConfigSnapshot:
        """This view's data and the source of each of its keys (paths relative to the view)."""
        if self._fixed is not None:
            fixed: Sources = {}
            record_sources(self._data, self._fixed, (), fixed)
            pairs = [(list(path), source) for path, source in fixed.items()]
        else:
            n = len(self._base)
            pairs = [
                (list(path[n:]), s) for path, s in self._sources.items() if len(path) > n and path[:n] == self._base
            ]
        n = len(self._base)
        hidden = [(list(p[n:]), why) for p, why in self._hidden.items() if len(p) > n and p[:n] == self._base]
        return ConfigSnapshot(data=copy.deepcopy(self._data), sources=pairs, hidden=hidden)

    @classmethod
    def from_snapshot(cls, snapshot: ConfigSnapshot) -> Config:
        """The root ``Config`` a snapshot describes; error messages still name each key's file."""
        sources = {tuple(path): source for path, source in snapshot.sources}
        hidden = {tuple(path): why for path, why in snapshot.hidden}
        return cls(copy.deepcopy(snapshot.data), sources, hidden=hidden)

    def hidden(self) -> dict[str, str]:
        """The withheld key paths (dot paths from the root) and why; empty for a config that is not scoped."""
        return {".".join(path): why for path, why in self._hidden.items()}

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
                if self._hidden:
                    self._check_hidden(key)
                return _ABSENT
            node = node[part]
        return node

    def _check_hidden(self, key: str | None) -> None:
        """Raise when ``key`` (absent here) is, or is below, a withheld path."""
        path = (*self._base, *(self._parts(key) if key else ()))
        for n in range(1, len(path) + 1):
            why = self._hidden.get(path[:n])
            if why is not None:
                raise ConfigError(f"config key '{'.'.join(path)}' is not visible to {why}")

    def _source_of(self, key: str | None) -> str | None:
        if self._fixed is not None:
            return self._fixed
        return self._sources.get((*self._base, *(self._parts(key) if key else ())))

    def _missing(self, key: str | None) -> ConfigError:
        return ConfigError(f"Missing required config value at '{self._full(key)}'")

    def _type_error(self, full: str, source: str | None, value: Any, wanted: str) -> ConfigError:
        where = f" in '{source}'" if source else ""
        got = type_name(value)
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
        """True when ``key`` is set; a withheld key is a ``ConfigError``, as for every getter."""
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
        return self._sub(key, self._read(key, "object", _as_object, True))

    def get_optional_config(self, key: str) -> Config | None:
        value = self._read(key, "object", _as_object, False)
        return None if value is None else self._sub(key, value)

    def get_config_list(self, key: str) -> list[Config]:
        return self._sub_list(key, self._read_list(key, dict, True))

    def get_optional_config_list(self, key: str) -> list[Config] | None:
        value = self._read_list(key, dict, False)
        return None if value is None else self._sub_list(key, value)

    def _sub(self, key: str, data: dict[str, Any]) -> Config:
        base = (*self._base, *self._parts(key))
        return Config(data, self._sources, prefix=self._full(key), base=base, fixed=self._fixed, hidden=self._hidden)

    def _sub_list(self, key: str, items: list[dict[str, Any]]) -> list[Config]:
        source = self._source_of(key)
        full = self._full(key)
        base = (*self._base, *self._parts(key))  # arrays are transparent to withheld paths
        return [
            Config(d, self._sources, prefix=f"{full}[{i}]", base=base, fixed=source, hidden=self._hidden)
            for i, d in enumerate(items)
        ]

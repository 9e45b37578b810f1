"""Which config values are secret, and config data with them hidden (``<secret>``) or collected for log redaction.

A field of a plugin's config schema (msgspec types) is secret when its type carries
``msgspec.Meta(extra={"secret": True})``, e.g. ``token: Secret`` (``kernel.api.Secret``).
The mark may sit on any type (a whole sub-object is then secret) and works through
``Optional``, lists (every item) and dicts (every value). Besides, any config key whose name
matches ``SECRET_KEY_RE`` (password, token, secret, api key, private key, authorization) is
secret wherever it is, unless its value is an object (then its children are looked at instead).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Final

import msgspec.inspect as mi

from kernel.config.reader import Config

__all__ = [
    "MIN_SECRET_LENGTH",
    "SECRET",
    "SECRET_KEY_RE",
    "is_secret_key",
    "plugin_secret_paths",
    "redact_secrets",
    "schema_secret_paths",
    "secret_values",
]

#: what a secret value is shown as
SECRET: Final = "<secret>"
SECRET_KEY_RE: Final = re.compile(
    r"pass(?:word|wd|phrase)|token|secret|api[-_]?key|private[-_]?key|authorization", re.IGNORECASE
)
#: secret values shorter than this are not searched for in log text (too likely to be ordinary words)
MIN_SECRET_LENGTH: Final = 4


def is_secret_key(key: str) -> bool:
    """True for key names that hold secrets by convention (``dbPassword``, ``apiToken``...)."""
    return SECRET_KEY_RE.search(key) is not None


# ---------------------------------------------------------------------------- secrets in schemas


def schema_secret_paths(schema: Any, prefix: str = "") -> list[str]:
    """Dot paths (under ``prefix``) of the values a msgspec schema marks secret; ``*`` is any dict key."""
    out: list[str] = []
    _collect(mi.type_info(schema), prefix, out, frozenset())
    return list(dict.fromkeys(out))


def _join(path: str, part: str) -> str:
    return f"{path}.{part}" if path else part


def _collect(t: mi.Type, path: str, out: list[str], seen: frozenset[int]) -> None:
    if isinstance(t, mi.Metadata):
        if (t.extra or {}).get("secret") is True and path:
            out.append(path)
        else:
            _collect(t.type, path, out, seen)
    elif isinstance(t, (mi.StructType, mi.TypedDictType, mi.DataclassType)):
        if id(t.cls) in seen:  # recursive schema
            return
        for f in t.fields:
            _collect(f.type, _join(path, f.encode_name), out, seen | {id(t.cls)})
    elif isinstance(t, (mi.ListType, mi.SetType, mi.FrozenSetType, mi.VarTupleType)):
        _collect(t.item_type, path, out, seen)
    elif isinstance(t, mi.TupleType):
        for item in t.item_types:
            _collect(item, path, out, seen)
    elif isinstance(t, mi.DictType):
        _collect(t.value_type, _join(path, "*"), out, seen)
    elif isinstance(t, mi.UnionType):
        for member in t.types:
            _collect(member, path, out, seen)


def plugin_secret_paths(schemas: Mapping[str, Any]) -> list[str]:
    """Secret paths of every plugin's schema, each under its plugin id; ``None`` schemas are skipped."""
    paths: list[str] = []
    for plugin_id, schema in schemas.items():
        if schema is not None:
            try:
                paths.extend(schema_secret_paths(schema, plugin_id))
            except (TypeError, ValueError):  # not a msgspec type: reported by `kernel config check`
                continue
    return paths


# ---------------------------------------------------------------------------- secrets in data

_Slot = tuple[Any, Any]  # (container, key) of a secret value


def _matches(path: tuple[str, ...], patterns: Sequence[tuple[str, ...]]) -> bool:
    return any(len(p) == len(path) and all(a == "*" or a == b for a, b in zip(p, path, strict=True)) for p in patterns)


def _slots(node: Any, path: tuple[str, ...], patterns: Sequence[tuple[str, ...]]) -> Iterator[_Slot]:
    if isinstance(node, dict):
        for key, value in node.items():
            here = (*path, str(key))
            if _matches(here, patterns) or (is_secret_key(str(key)) and not isinstance(value, dict)):
                yield node, key
            else:
                yield from _slots(value, here, patterns)
    elif isinstance(node, list):
        for item in node:  # arrays are transparent: a path reaches into every item
            yield from _slots(item, path, patterns)


def _patterns(paths: Iterable[str]) -> list[tuple[str, ...]]:
    return [tuple(p.split(".")) for p in paths if p]


def redact_secrets(data: Mapping[str, Any] | Config, paths: Iterable[str] = ()) -> dict[str, Any]:
    """Deep copy of config data with every secret (schema ``paths`` and secret key names) as ``<secret>``."""
    out: dict[str, Any] = data.to_dict() if isinstance(data, Config) else copy.deepcopy(dict(data))
    for container, key in list(_slots(out, (), _patterns(paths))):
        container[key] = SECRET
    return out


def secret_values(data: Mapping[str, Any] | Config, paths: Iterable[str] = ()) -> set[str]:
    """The secret strings in config data (at least ``MIN_SECRET_LENGTH`` long), for log redaction."""
    raw = data.to_dict() if isinstance(data, Config) else dict(data)
    found: set[str] = set()
    for container, key in _slots(raw, (), _patterns(paths)):
        _strings(container[key], found)
    return {v for v in found if len(v) >= MIN_SECRET_LENGTH}


def _strings(value: Any, into: set[str]) -> None:
    if isinstance(value, str):
        into.add(value.strip())
    elif isinstance(value, dict):
        for v in value.values():
            _strings(v, into)
    elif isinstance(value, list):
        for v in value:
            _strings(v, into)

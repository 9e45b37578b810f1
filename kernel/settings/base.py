"""What every module of the settings schema shares: the base struct of a section and the config helpers.

``SettingsStruct`` is the base of the sections whose keys the config writes in camelCase (an unknown
key is an error); ``read_section`` and ``convert`` turn a config subtree into a msgspec type, a
mistake being a ``ConfigError`` naming the full key; ``ConfigReader`` is the read-only getters of a
config. ``merge`` (the config deep-merge of ``kernel.config``'s loading) lives here too: ``kernel.api``
exports it, and a contract module may not import ``kernel.config`` (whose package brings in asyncio).

A contract module: it imports msgspec, the standard library and ``kernel.errors``.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

import msgspec

from kernel.errors import ConfigError

__all__ = ["ConfigReader", "HasGetOptional", "SettingsStruct", "convert", "merge", "read_section"]

_T = TypeVar("_T")


# The base of a section: keys in camelCase, an unknown key is an error, immutable. No docstring on
# purpose: a section without its own inherits it in docs/configuration.md (scripts/config-reference).
class SettingsStruct(msgspec.Struct, forbid_unknown_fields=True, rename="camel", frozen=True):
    pass


class HasGetOptional(Protocol):
    """What reading a section needs of a config (``kernel.config.Config`` has it, and ``ConfigReader``)."""

    def get_optional(self, key: str) -> Any: ...


class ConfigReader(Protocol):
    """The read-only getters of a config (``kernel.config.Config``, and every ``RootConfig``)."""

    def get(self, key: str | None = None) -> Any: ...
    def get_optional(self, key: str) -> Any: ...
    def get_string(self, key: str) -> str: ...
    def get_optional_string(self, key: str) -> str | None: ...
    def get_number(self, key: str) -> float: ...
    def get_optional_number(self, key: str) -> float | None: ...
    def get_boolean(self, key: str) -> bool: ...
    def get_optional_boolean(self, key: str) -> bool | None: ...
    def has(self, key: str) -> bool: ...
    def keys(self) -> list[str]: ...
    def get_string_list(self, key: str) -> list[str]: ...
    def get_optional_string_list(self, key: str) -> list[str] | None: ...
    def source(self, key: str | None = None) -> str | None: ...


def merge(base: Any, over: Any) -> Any:
    """Objects deep-merge; everything else (arrays, scalars, null) replaces."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = merge(base[k], v) if k in base else v
        return out
    return over


def convert(raw: Any, key: str, type_: type[_T]) -> _T:
    """``raw``, the config's value at ``key`` (``None``: absent), as a msgspec type; a mistake names the full key.

    Strings convert to numbers and booleans (``${PORT}`` is always a string).
    """
    try:
        return msgspec.convert(raw if raw is not None else {}, type_, strict=False)
    except msgspec.ValidationError as exc:
        msg = str(exc).replace("`$.", f"`{key}.").replace("`$[", f"`{key}[").replace("`$`", f"`{key}`")
        raise ConfigError(f"Invalid config under '{key}': {msg}") from None


def read_section(config: HasGetOptional, key: str, type_: type[_T]) -> _T:
    """The config subtree at ``key`` converted to a msgspec type; a mistake names the full key.

    Strings convert to numbers and booleans (``${PORT}`` is always a string).
    """
    return convert(config.get_optional(key), key, type_)

"""A plugin's config checked against its ``config_schema``; each problem names the key and its file.

The schema (msgspec types) validates the top-level config key named after the plugin id
(``hello:`` for plugin ``hello``); an absent key is checked as ``{}``, so a schema with only
defaulted fields accepts it and a required field is reported as missing.
"""

from __future__ import annotations

import re
from typing import Any, Final

import msgspec

from kernel.errors import ConfigError
from kernel.settings import ConfigReader

__all__ = ["validate_plugin_config"]

_AT_RE: Final = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<at>[^`]*)`)?$", re.DOTALL)
_MISSING_RE: Final = re.compile(r"^Object missing required field `(?P<field>[^`]+)`$")


def validate_plugin_config(config: ConfigReader, plugin_id: str, schema: Any) -> list[str]:
    """Problems with config key ``<plugin_id>`` against the plugin's schema, each naming key and source."""
    value = config.get_optional(plugin_id)
    try:
        msgspec.convert({} if value is None else value, schema, strict=False)
    except msgspec.ValidationError as exc:
        m = _AT_RE.match(str(exc))
        assert m is not None
        msg, at = m.group("msg"), m.group("at") or ""
        key = plugin_id + at
        missing = _MISSING_RE.match(msg)
        if missing is not None:
            key = f"{key}.{missing.group('field')}"
        source = _nearest_source(config, key)
        where = f" in '{source}'" if source else ""
        return [f"plugin '{plugin_id}': invalid config at '{key}'{where}: {msg}"]
    except (TypeError, ValueError) as exc:
        return [f"plugin '{plugin_id}': its config_schema {schema!r} is not a msgspec type: {exc}"]
    return []


def _nearest_source(config: ConfigReader, key: str) -> str | None:
    """Source of ``key`` or of its closest existing parent (array indexes and ``[...]`` are cut)."""
    parts = re.sub(r"\[[^\]]*\]", "", key).split(".")
    while parts:
        try:
            source = config.source(".".join(parts))
        except ConfigError:
            source = None
        if source is not None:
            return source
        parts.pop()
    return None

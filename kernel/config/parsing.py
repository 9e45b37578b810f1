"""Config files as text to data: YAML 1.2 (booleans only true/false, no timestamps) or JSON for ``*.json``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Final

import yaml

from kernel.errors import ConfigError

__all__ = ["parse_text", "type_name"]


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans (only true/false) and timestamps kept as strings."""


_BOOL_TAG: Final = "tag:yaml.org,2002:bool"
_Loader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in entries if tag not in (_BOOL_TAG, "tag:yaml.org,2002:timestamp")]
    for ch, entries in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


_TYPE_NAMES: Final = (
    (type(None), "null"),
    (bool, "boolean"),
    ((int, float), "number"),
    (str, "string"),
    (list, "array"),
    (dict, "object"),
)


def type_name(value: Any) -> str:
    """JSON-ish type name used in error messages (bool is 'boolean', never 'number')."""
    return next((name for t, name in _TYPE_NAMES if isinstance(value, t)), type(value).__name__)


def parse_text(text: str, path: Path, display: str) -> Any:
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

"""What a config file's values may ask for: ``${VAR}`` substitution and the ``$env``, ``$file``, ``$include`` directives.

``${VAR}`` alone is the variable's value (the key vanishes when it is unset), ``${VAR:-default}``
falls back when it is unset or empty, ``$${...}`` is a literal ``${...}``. ``{$env: VAR}`` is the
variable, ``{$file: path}`` a file's text and ``{$include: path#dot.path}`` another config file
(or a part of it); relative paths resolve against the including file's directory.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from kernel.config.parsing import parse_text, type_name
from kernel.errors import ConfigError

__all__ = ["ABSENT", "Context", "transform"]

_DIRECTIVES: Final = frozenset({"$env", "$file", "$include"})
_SUBST_RE: Final = re.compile(r"\$?\$\{([^{}]*)\}")
_SUBST_BODY_RE: Final = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?::-(.*))?", re.DOTALL)


class _Absent(enum.Enum):
    ABSENT = 0


#: what ``transform`` returns for a value that vanishes (an unset ``${VAR}`` or ``$env``)
ABSENT: Final = _Absent.ABSENT


@dataclass(frozen=True)
class Context:
    file: Path  # file being transformed; relative directive paths resolve against its directory
    display: str  # how that file is named in messages
    env: Mapping[str, str]
    stack: tuple[Path, ...]  # resolved files currently being included (cycle detection)
    #: keys (as ``a.b[0].c``) whose value a ``$env``, ``$file`` or ``${VAR}`` produced: secret to scoping
    derived: set[str] = field(default_factory=set)
    #: loaded from a URL: no file around it for ``$file``/``$include`` to be relative to
    remote: bool = False


def _child(key: str, part: str | int) -> str:
    if isinstance(part, int):
        return f"{key}[{part}]"
    return f"{key}.{part}" if key else part


def _fail(ctx: Context, key: str, msg: str) -> ConfigError:
    return ConfigError(f"Error in config key '{key or '<root>'}' in '{ctx.display}': {msg}")


def _norm_key(key: Any) -> str:
    return key if isinstance(key, str) else json.dumps(key)


def transform(value: Any, key: str, ctx: Context) -> Any:
    """Apply substitutions and directives; returns ``ABSENT`` for values that vanish."""
    if isinstance(value, str):
        text = _substitute(value, key, ctx)
        if text != value:
            ctx.derived.add(key)
        return text
    if isinstance(value, dict):
        directive = _directive_of(value, key, ctx)
        if directive is not None:
            if directive[0] != "$include":
                ctx.derived.add(key)
            return _apply_directive(directive[0], directive[1], key, ctx)
        out: dict[str, Any] = {}
        for k, v in value.items():
            name = _norm_key(k)
            res = transform(v, _child(key, name), ctx)
            if res is not ABSENT:
                out[name] = res
        return out
    if isinstance(value, list):
        items = (transform(v, _child(key, i), ctx) for i, v in enumerate(value))
        return [v for v in items if v is not ABSENT]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    raise _fail(ctx, key, f"Unsupported value of type {type(value).__name__}")


def _directive_of(value: dict[Any, Any], key: str, ctx: Context) -> tuple[str, Any] | None:
    found = [k for k in value if k in _DIRECTIVES]
    if found:
        if len(value) != 1:
            raise _fail(ctx, key, f"Directive '{found[0]}' must be the only key in its mapping")
        return found[0], value[found[0]]
    only = next(iter(value)) if len(value) == 1 else None
    if isinstance(only, str) and re.fullmatch(r"\$[A-Za-z]\w*", only):
        raise _fail(ctx, key, f"Unknown config directive '{only}'")
    return None


def _apply_directive(name: str, arg: Any, key: str, ctx: Context) -> Any:
    if not isinstance(arg, str):
        raise _fail(ctx, key, f"Directive '{name}' expects a string, got {type_name(arg)}")
    if name == "$env":
        val = ctx.env.get(arg.strip())
        return ABSENT if val is None else val
    if ctx.remote:
        raise _fail(ctx, key, f"Directive '{name}' cannot be used in config loaded from a URL")
    target = _substitute(arg, key, ctx)
    if not isinstance(target, str) or not target.strip():
        raise _fail(ctx, key, f"Directive '{name}' has an empty path")
    if name == "$file":
        try:
            return (ctx.file.parent / target).read_text(encoding="utf-8")
        except OSError as e:
            raise _fail(ctx, key, f"Unable to read $file '{target}': {e.strerror or e}") from None
    return _include(target, key, ctx)


def _include(target: str, key: str, ctx: Context) -> Any:
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
        data = parse_text(text, path, str(path))
    except ConfigError as e:
        raise _fail(ctx, key, f"Invalid $include: {e}") from None
    for part in selector.split(".") if selector else ():
        if not isinstance(data, dict) or part not in data:
            raise _fail(ctx, key, f"Path '{selector}' not found in $include '{file_part}'")
        data = data[part]
    return transform(data, key, Context(path, str(path), ctx.env, (*ctx.stack, resolved), ctx.derived))


def _lookup_var(body: str, key: str, ctx: Context) -> tuple[str, Any]:
    """(variable name, value or default or ABSENT) for the body of a ${...}."""
    m = _SUBST_BODY_RE.fullmatch(body)
    if m is None:
        raise _fail(ctx, key, f"Invalid substitution '${{{body}}}'")
    name, default = m.group(1), m.group(2)
    val = ctx.env.get(name)
    if default is not None and not val:
        return name, default
    return name, ABSENT if val is None else val


def _substitute(text: str, key: str, ctx: Context) -> Any:
    """Expand ${VAR}, ${VAR:-default} and the $${...} escape in one string value."""
    whole = _SUBST_RE.fullmatch(text)
    if whole is not None and not text.startswith("$$"):
        return _lookup_var(whole.group(1), key, ctx)[1]

    def repl(m: re.Match[str]) -> str:
        if m.group(0).startswith("$$"):
            return m.group(0)[1:]
        name, val = _lookup_var(m.group(1), key, ctx)
        if val is ABSENT:
            raise _fail(ctx, key, f"environment variable '{name}' used in '{text}' is not set")
        return str(val)

    return _SUBST_RE.sub(repl, text)

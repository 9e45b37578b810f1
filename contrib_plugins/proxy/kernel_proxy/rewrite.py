"""Where a request goes upstream: ``pathRewrite`` rules and the join with the target's path.

As in the reference system (http-proxy-middleware under Backstage's proxy), rules apply to the
request path as the backend sees it, mount included (``/api/proxy/frobs/list``); the first rule
whose regex matches replaces its first match, and the result is appended to the target's path
(``http://api/v1`` + ``/list`` is ``http://api/v1/list``; repeated slashes collapse). Without
``pathRewrite`` the mount and the endpoint's route are cut: ``^/api/proxy/frobs/?`` becomes ``/``.

Rules are written as JavaScript regexes and replacements, so a Backstage config works unchanged:
``(?<name>...)`` groups and ``$1``, ``$<name>``, ``$&``, ``$$`` in replacements are understood.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

__all__ = ["PathRewrite", "default_rewrite", "join_path"]

_JS_NAMED_GROUP: Final = re.compile(r"\(\?<(?![=!])")
_JS_BACKREF: Final = re.compile(r"\\k<([A-Za-z_]\w*)>")
_JS_REPLACEMENT: Final = re.compile(r"\$(\$|&|`|'|<([A-Za-z_]\w*)>|\d{1,2})")
_SLASHES: Final = re.compile(r"/{2,}")


class PathRewrite:
    """``pathRewrite`` rules in order: the first whose regex matches rewrites the path."""

    def __init__(self, rules: Mapping[str, str]) -> None:
        compiled: list[tuple[re.Pattern[str], str]] = []
        for pattern, replacement in rules.items():
            python = _JS_BACKREF.sub(r"(?P=\1)", _JS_NAMED_GROUP.sub("(?P<", pattern))
            try:
                compiled.append((re.compile(python), replacement))
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a regular expression: {exc}") from None
        self.rules = tuple(compiled)

    def apply(self, path: str) -> str:
        for regex, replacement in self.rules:
            match = regex.search(path)
            if match is not None:
                return path[: match.start()] + _expand(match, replacement) + path[match.end() :]
        return path

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PathRewrite) and [(r.pattern, v) for r, v in self.rules] == [
            (r.pattern, v) for r, v in other.rules
        ]

    def __hash__(self) -> int:
        return hash(tuple((r.pattern, v) for r, v in self.rules))

    def __repr__(self) -> str:
        return f"PathRewrite({dict((r.pattern, v) for r, v in self.rules)!r})"


def _expand(match: re.Match[str], replacement: str) -> str:
    """A JavaScript ``String.replace`` replacement pattern, expanded for ``match``."""

    def one(token: re.Match[str]) -> str:
        what = token.group(1)
        if what == "$":
            return "$"
        if what == "&":
            return match.group(0)
        if what == "`":
            return match.string[: match.start()]
        if what == "'":
            return match.string[match.end() :]
        if token.group(2) is not None:
            name = token.group(2)
            return (match.group(name) or "") if name in match.re.groupindex else token.group(0)
        number = int(what)
        if 0 < number <= match.re.groups:
            return match.group(number) or ""
        if len(what) == 2 and 0 < int(what[0]) <= match.re.groups:  # "$12" with one group: "$1" then "2"
            return (match.group(int(what[0])) or "") + what[1]
        return token.group(0)

    return _JS_REPLACEMENT.sub(one, replacement)


def default_rewrite(rest: str) -> str:
    """The default rule on the path after the endpoint's route: ``/list`` stays, ```` becomes ``/``."""
    return rest if rest.startswith("/") else "/" + rest


def join_path(target_path: str, path: str) -> str:
    """The target's path and the rewritten request path, as http-proxy joins them."""
    joined = _SLASHES.sub("/", "/".join(p for p in (target_path, path) if p))
    return joined if joined.startswith("/") else "/" + joined

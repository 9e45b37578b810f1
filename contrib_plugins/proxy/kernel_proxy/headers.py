"""Which headers cross the proxy, in each direction.

Only an allow list passes (the reference system's ``safeForwardHeaders``): the CORS-safelisted
headers, ``host``, ``accept``, ``accept-language`` and ``user-agent``, plus an endpoint's
``allowedHeaders`` and the names of its configured ``headers`` (upstream only). So the caller's
``Authorization`` and ``Cookie`` never reach the upstream (unless ``credentials: forward`` lets
``Authorization`` through, or ``allowedHeaders`` names them), and the upstream's ``Set-Cookie``
never reaches the caller unless ``allowedHeaders`` names it. Hop-by-hop headers (and those a
``Connection`` header names) never pass, whatever the lists say. ``Content-Encoding`` passes back
with the bytes it describes (they are relayed as they are); ``X-Forwarded-For/Proto/Host`` are set.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

__all__ = ["HOP_BY_HOP", "SAFE_HEADERS", "downstream_headers", "upstream_headers"]

SAFE_HEADERS: Final = frozenset(
    {
        "cache-control",
        "content-language",
        "content-length",
        "content-type",
        "expires",
        "last-modified",
        "pragma",
        "host",
        "accept",
        "accept-language",
        "user-agent",
    }
)
HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_FORWARDED: Final = frozenset({"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"})


def _connection_listed(headers: Iterable[tuple[str, str]]) -> set[str]:
    """Header names a ``Connection`` header declares hop-by-hop."""
    return {
        token.strip().lower() for name, value in headers if name == "connection" for token in value.split(",") if token
    }


def upstream_headers(
    caller: Sequence[tuple[bytes, bytes]],
    *,
    allow: frozenset[str],
    configured: Sequence[tuple[str, str]],
    change_origin: bool,
    streamed: bool,
    client: str | None,
    scheme: str,
) -> list[tuple[str, str]]:
    """The headers of the upstream request, from the caller's ASGI headers.

    ``Host``: the target's (aiohttp sets it) with ``change_origin``, else the caller's.
    ``Content-Length``: the caller's for a streamed body; else aiohttp counts the bytes.
    """
    decoded = [(n.decode("latin-1").lower(), v.decode("latin-1")) for n, v in caller]
    dropped = HOP_BY_HOP | _connection_listed(decoded)
    host = next((v for n, v in decoded if n == "host"), None)
    out: list[tuple[str, str]] = []
    prior_for: list[str] = []
    for name, value in decoded:
        if name not in allow or name in dropped:
            continue
        if (name == "host" and change_origin) or (name == "content-length" and not streamed):
            continue
        if name == "x-forwarded-for":
            prior_for.append(value)  # allowed: extended below, as a chain of proxies does
            continue
        if name in _FORWARDED:
            continue  # set below
        out.append((name, value))
    if client:
        out.append(("x-forwarded-for", ", ".join([*prior_for, client])))
    out.append(("x-forwarded-proto", scheme))
    if host:
        out.append(("x-forwarded-host", host))
    names = {name.lower() for name, _ in configured}
    return [(n, v) for n, v in out if n not in names] + list(configured)


def downstream_headers(upstream: Iterable[tuple[bytes, bytes]], *, allow: frozenset[str]) -> list[tuple[bytes, bytes]]:
    """The headers of the answer to the caller, from the upstream's raw headers (repeats kept)."""
    raw = [(n.lower(), v) for n, v in upstream]
    dropped = HOP_BY_HOP | _connection_listed((n.decode("latin-1"), v.decode("latin-1")) for n, v in raw)
    return [
        (name, value)
        for name, value in raw
        if (text := name.decode("latin-1")) not in dropped and (text in allow or text == "content-encoding")
    ]

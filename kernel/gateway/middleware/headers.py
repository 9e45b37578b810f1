"""Security headers on every answer, as helmet sets them, and the operator's extra health headers.

The defaults (``kernel.settings.headers``): Backstage's Content-Security-Policy (``backend.csp``
replaces a directive, ``false`` removes it) and helmet's other headers; ``backend.securityHeaders``
overrides any of them (a string) or removes it (``false``). ``Strict-Transport-Security`` goes only
on answers over TLS (``https``, or ``X-Forwarded-Proto: https`` from a trusted proxy).

A header the plugin set on its own answer wins: the edge adds only those missing, as helmet sets
them before the route runs and a handler may overwrite them (a plugin serving an HTML page can
loosen its own CSP; every other answer keeps the operator's).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kernel.settings import CSP_DIRECTIVES, SECURITY_HEADERS, EdgeSettings

Header = tuple[bytes, bytes]
HSTS = b"strict-transport-security"


def _kebab(name: str) -> str:
    """``connectSrc`` -> ``connect-src`` (the reference system kebab-cases ``backend.csp`` keys)."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"-\1", name).lower()


def csp_value(overrides: Mapping[str, Sequence[str] | bool]) -> str:
    """The Content-Security-Policy: Backstage's directives with ``backend.csp`` applied."""
    directives: dict[str, Sequence[str]] = dict(CSP_DIRECTIVES)
    for name, value in overrides.items():
        key = _kebab(name)
        if value is False:
            directives.pop(key, None)
        elif not isinstance(value, bool):
            directives[key] = value
    return ";".join(" ".join([k, *v]) for k, v in directives.items())


def security_headers(edge: EdgeSettings) -> tuple[list[Header], Header | None]:
    """The headers for every answer, and Strict-Transport-Security for answers over TLS (if kept)."""
    chosen = {name.lower(): value for name, value in SECURITY_HEADERS.items()}  # ASGI names are lowercase
    csp = csp_value(edge.csp)
    if csp:
        chosen["content-security-policy"] = csp
    for name, value in edge.security_headers.items():
        if value is False:
            chosen.pop(name.lower(), None)
        elif isinstance(value, str):
            chosen[name.lower()] = value
    hsts = chosen.pop(HSTS.decode(), None)
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in chosen.items()]
    return headers, ((HSTS, hsts.encode("latin-1")) if hsts is not None else None)


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, *, headers: Sequence[Header], hsts: Header | None) -> None:
        self.app = app
        self.headers = list(headers)
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        defaults = self.headers
        if self.hsts is not None and scope.get("scheme") == "https":
            defaults = [*defaults, self.hsts]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                own = message.get("headers") or []
                if own:
                    present = {name.lower() for name, _ in own}
                    extra = [h for h in defaults if h[0] not in present]
                else:
                    extra = defaults
                message = {**message, "headers": [*own, *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class HealthHeadersMiddleware:
    """``backend.health.headers`` on every answer under ``prefix`` (the health endpoints)."""

    def __init__(self, app: ASGIApp, *, headers: Mapping[str, str], prefix: str) -> None:
        self.app = app
        self.headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {h[0] for h in self.headers}
                own = [h for h in message.get("headers") or [] if h[0].lower() not in names]
                message = {**message, "headers": [*own, *self.headers]}
            await send(message)

        await self.app(scope, receive, send_with_headers)

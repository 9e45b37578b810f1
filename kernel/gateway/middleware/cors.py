"""CORS, as the reference system's ``backend.cors`` configures the ``cors`` package; preflights end here.

An ``Origin`` that matches a pattern of ``origin`` (glob, case-insensitive, as minimatch with
``nocase`` and ``noglobstar``: ``*`` stays within a ``/`` segment, ``?``, ``[...]``, ``{a,b}``) is
echoed in ``Access-Control-Allow-Origin`` with ``Vary: Origin``; no ``origin`` key allows any, as
``*``. A preflight (``OPTIONS`` with ``Access-Control-Request-Method``) from an allowed origin is
answered here with ``optionsSuccessStatus`` (204) and never reaches a worker (unless
``preflightContinue``); from any other origin it is a 403 ``NotAllowedError``. Other requests
from a refused origin pass without CORS headers (the browser then keeps the answer from the page).
A plugin that set ``Access-Control-Allow-Origin`` itself keeps its own CORS headers.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kernel.gateway.middleware.errors import send_error
from kernel.settings import CorsSettings

Header = tuple[bytes, bytes]
ORIGIN = b"origin"
ALLOW_ORIGIN = b"access-control-allow-origin"
REQUEST_METHOD = b"access-control-request-method"
REQUEST_HEADERS = b"access-control-request-headers"


def glob_regex(pattern: str) -> str:
    """A minimatch-style pattern (``nocase``, ``noglobstar``) as a regular expression."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        end = pattern.find("]" if c == "[" else "}", i + 1) if c in "[{" else -1
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[" and end > i + 1:
            body = pattern[i + 1 : end]
            negate = body[0] in "!^"
            if negate:
                body = body[1:]
            chars = "".join("\\" + ch if ch in "\\]^[" else ch for ch in body)
            out.append(("[^" if negate else "[") + chars + "]")
            i = end
        elif c == "{" and end > i:
            out.append("(?:" + "|".join(glob_regex(alt) for alt in pattern[i + 1 : end].split(",")) + ")")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def _vary(headers: list[Header], value: bytes) -> list[Header]:
    """``headers`` with ``value`` added to its ``Vary`` (once)."""
    for i, (name, old) in enumerate(headers):
        if name.lower() == b"vary":
            tokens = [t.strip().lower() for t in old.split(b",")]
            if b"*" in tokens or value.lower() in tokens:
                return headers
            return [*headers[:i], (name, old + b", " + value), *headers[i + 1 :]]
    return [*headers, (b"vary", value)]


class CorsMiddleware:
    def __init__(self, app: ASGIApp, *, settings: CorsSettings) -> None:
        self.app = app
        self.any_origin = settings.origin is None
        patterns = settings.origin or []
        self.matcher = re.compile("|".join(f"(?:{glob_regex(p)})" for p in patterns) or "(?!)", re.IGNORECASE)
        self.credentials = settings.credentials
        self.preflight_continue = settings.preflight_continue
        self.status = settings.options_success_status
        self.methods = ",".join(settings.methods).encode()
        allowed = settings.allowed_headers
        self.allowed_headers = ",".join(allowed).encode() if allowed is not None else None
        self.exposed = ",".join(settings.exposed_headers).encode() if settings.exposed_headers else None
        self.max_age = str(settings.max_age).encode() if settings.max_age is not None else None

    def _allowed(self, origin: bytes) -> bool:
        return self.any_origin or self.matcher.fullmatch(origin.decode("latin-1")) is not None

    def _common(self, origin: bytes) -> list[Header]:
        """The headers of every CORS answer (preflight or not) for an allowed ``origin``."""
        out = [(ALLOW_ORIGIN, b"*" if self.any_origin else origin)]
        if self.credentials:
            out.append((b"access-control-allow-credentials", b"true"))
        if self.exposed is not None:
            out.append((b"access-control-expose-headers", self.exposed))
        return out

    def _preflight(self, origin: bytes, asked: bytes | None) -> list[Header]:
        out = self._common(origin)
        out.append((b"access-control-allow-methods", self.methods))
        vary = [] if self.any_origin else [b"Origin"]
        if self.allowed_headers is not None:
            if self.allowed_headers:
                out.append((b"access-control-allow-headers", self.allowed_headers))
        elif asked:
            out.append((b"access-control-allow-headers", asked))
            vary.append(b"Access-Control-Request-Headers")
        if self.max_age is not None:
            out.append((b"access-control-max-age", self.max_age))
        if vary:
            out.append((b"vary", b", ".join(vary)))
        return out

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin = method = asked = None
        for name, value in scope["headers"]:
            if name == ORIGIN:
                origin = value
            elif name == REQUEST_METHOD:
                method = value
            elif name == REQUEST_HEADERS:
                asked = value
        if origin is None:  # not a cross-origin request
            await self.app(scope, receive, send)
            return
        allowed = self._allowed(origin)
        if scope["method"] == "OPTIONS" and method is not None:
            if not allowed:
                await send_error(send, scope, "NotAllowedError", f"Origin {origin.decode('latin-1')!r} is not allowed")
                return
            headers = self._preflight(origin, asked)
            if not self.preflight_continue:
                await send(
                    {
                        "type": "http.response.start",
                        "status": self.status,
                        "headers": [*headers, (b"content-length", b"0")],
                    }
                )
                await send({"type": "http.response.body", "body": b""})
                return
        elif not allowed:
            await self.app(scope, receive, send)
            return
        else:
            headers = self._common(origin)
        vary = not self.any_origin

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                own = message.get("headers") or []
                if not any(name.lower() == ALLOW_ORIGIN for name, _ in own):  # the plugin's own CORS wins
                    own = [*own, *(h for h in headers if h[0] != b"vary")]
                    if vary:
                        own = _vary(own, b"Origin")
                    message = {**message, "headers": own}
            await send(message)

        await self.app(scope, receive, send_with_cors)

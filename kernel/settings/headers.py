"""``backend.csp`` and ``backend.securityHeaders``: the security headers of every answer, helmet's by default.

What they drive is ``kernel.gateway.middleware.headers``.

A contract module: it imports the standard library, ``kernel.errors`` and ``kernel.settings.base``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from kernel.errors import ConfigError
from kernel.settings.base import HasGetOptional, convert

__all__ = ["CSP_DIRECTIVES", "SECURITY_HEADERS", "read_csp", "read_security_headers"]


#: Backstage's Content-Security-Policy: helmet's default directives, ``script-src`` with
#: ``'unsafe-eval'`` and without ``form-action``. ``backend.csp`` replaces directives (``false`` removes one).
CSP_DIRECTIVES: Final[Mapping[str, tuple[str, ...]]] = {
    "default-src": ("'self'",),
    "base-uri": ("'self'",),
    "font-src": ("'self'", "https:", "data:"),
    "frame-ancestors": ("'self'",),
    "img-src": ("'self'", "data:"),
    "object-src": ("'none'",),
    "script-src": ("'self'", "'unsafe-eval'"),
    "script-src-attr": ("'none'",),
    "style-src": ("'self'", "https:", "'unsafe-inline'"),
    "upgrade-insecure-requests": (),
}

#: helmet's default headers besides the CSP (Strict-Transport-Security only on TLS).
#: ``backend.securityHeaders`` overrides one (a string) or removes it (``false``).
SECURITY_HEADERS: Final[Mapping[str, str]] = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Origin-Agent-Cluster": "?1",
    "Referrer-Policy": "no-referrer",
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "X-DNS-Prefetch-Control": "off",
    "X-Download-Options": "noopen",
    "X-Frame-Options": "SAMEORIGIN",
    "X-Permitted-Cross-Domain-Policies": "none",
    "X-XSS-Protection": "0",
}


def _no_true(values: Mapping[str, Any], key: str, what: str) -> None:
    for name, value in values.items():
        if value is True:
            raise ConfigError(f"Invalid config: {key}.{name} must be {what} or false (to remove it)")


def read_csp(config: HasGetOptional) -> dict[str, list[str] | bool]:
    """``backend.csp``: directive -> sources, or false to remove it; validated."""
    csp = convert(config.get_optional("backend.csp"), "backend.csp", dict[str, list[str] | bool])
    _no_true(csp, "backend.csp", "a list of sources")
    return csp


def read_security_headers(config: HasGetOptional) -> dict[str, str | bool]:
    """``backend.securityHeaders``: header -> value, or false to remove it; validated."""
    key = "backend.securityHeaders"
    headers = convert(config.get_optional(key), key, dict[str, str | bool])
    _no_true(headers, key, "a string")
    return headers

"""``backend.cors``: the gateway's CORS, with the ``cors`` package's options and defaults (absent: none).

What it drives is ``kernel.gateway.middleware.cors``.

A contract module: it imports msgspec, the standard library, ``kernel.errors`` and ``kernel.settings.base``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from kernel.errors import ConfigError
from kernel.settings.base import HasGetOptional, SettingsStruct, convert

__all__ = ["CorsSettings", "read_cors_settings"]


class CorsSettings(SettingsStruct, frozen=True):
    """``backend.cors`` (absent: the gateway does no CORS). The ``cors`` package's options and defaults.

    ``origin``: glob patterns (``*`` within a segment, ``?``, ``[...]``, ``{a,b}``; case-insensitive)
    an allowed ``Origin`` matches, echoed back; ``None``: any origin, as ``*``. ``allowedHeaders``
    ``None``: whatever the preflight asks for. Strings are read as comma-separated lists.
    """

    #: origins allowed (glob patterns); not set: any origin, answered as ``*``
    origin: list[str] | None = None
    #: methods a preflight allows (``Access-Control-Allow-Methods``)
    methods: list[str] = msgspec.field(default_factory=lambda: ["GET", "HEAD", "PUT", "PATCH", "POST", "DELETE"])
    #: request headers a preflight allows; not set: those it asks for (``Access-Control-Request-Headers``)
    allowed_headers: list[str] | None = None
    #: answer headers a page may read (``Access-Control-Expose-Headers``)
    exposed_headers: list[str] = []
    #: send ``Access-Control-Allow-Credentials: true`` (cookies, Authorization from the browser)
    credentials: bool = False
    #: seconds a browser may keep a preflight's answer (``Access-Control-Max-Age``); not set: none sent
    max_age: int | None = None
    #: true: an allowed preflight goes on to the plugin (with the CORS headers) instead of ending at the gateway
    preflight_continue: bool = False
    #: the status of a preflight's answer
    options_success_status: int = 204


def _lists(raw: Any, keys: tuple[str, ...]) -> Any:
    """The reference system reads these keys as a string or a list: a string is a comma-separated list."""
    if not isinstance(raw, dict):
        return raw
    out = dict(raw)
    for k in keys:
        if isinstance(out.get(k), str):
            out[k] = [part.strip() for part in out[k].split(",") if part.strip()]
    return out


def read_cors_settings(config: HasGetOptional) -> CorsSettings | None:
    """``backend.cors`` (``None`` when absent: no CORS), validated."""
    cors_raw = config.get_optional("backend.cors")
    if cors_raw is None:
        return None
    fields = ("origin", "methods", "allowedHeaders", "exposedHeaders")
    cors = convert(_lists(cors_raw, fields), "backend.cors", CorsSettings)
    if not 200 <= cors.options_success_status <= 299:
        raise ConfigError("Invalid config: backend.cors.optionsSuccessStatus must be a 2xx status")
    return cors

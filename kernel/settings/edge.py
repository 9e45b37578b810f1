"""The HTTP edge: what every gateway does to every request and answer, ``Settings.edge``.

The reference system's keys, with its defaults: ``backend.cors`` (``kernel.settings.cors``),
``backend.csp`` and the kernel's ``backend.securityHeaders`` (``kernel.settings.headers``),
``backend.rateLimit`` (``kernel.settings.ratelimit``), ``backend.trustProxy``, ``backend.https``,
``backend.health.headers``; and the kernel's own: ``backend.compression``, ``backend.accessLog``,
``backend.requestId`` and ``backend.dashboard`` (``kernel.settings.dashboard``; the kernel's own
page at the root, as the health endpoints are). The small sections are here, with ``EdgeSettings``
that holds them all; ``read_edge_settings`` reads and validates every one, a mistake is a
``ConfigError`` naming the key.

A contract module: it imports msgspec, the standard library, ``kernel.errors`` and the modules of
``kernel.settings`` named above (and ``kernel.settings.base``); no I/O.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Final

import msgspec

from kernel.errors import ConfigError
from kernel.settings.base import HasGetOptional, SettingsStruct, convert
from kernel.settings.cors import CorsSettings, read_cors_settings
from kernel.settings.dashboard import DashboardSettings, read_dashboard_settings
from kernel.settings.headers import read_csp, read_security_headers
from kernel.settings.ratelimit import RateLimitSettings, read_rate_limit_settings

__all__ = [
    "AccessLogSettings",
    "Certificate",
    "CompressionSettings",
    "EdgeSettings",
    "HealthSettings",
    "HttpsSettings",
    "RequestIdSettings",
    "read_edge_settings",
]


class Certificate(SettingsStruct, frozen=True):
    """``backend.https.certificate``: PEM text (as the reference system, e.g. ``$file: cert.pem``) or a file path."""

    #: the certificate (chain): PEM text or a file path
    cert: str
    #: its private key: PEM text or a file path
    key: str


class HttpsSettings(SettingsStruct, frozen=True):
    """``backend.https``: ``certificate`` from config, or ``None`` (``https: true``): a generated self-signed one."""

    #: the certificate to serve; ``https: true`` instead: a generated self-signed one in ``var/tls``
    certificate: Certificate | None = None


class HealthSettings(SettingsStruct, frozen=True):
    """``backend.health``: ``headers`` added to every health answer (e.g. to tell instances apart)."""

    #: header name -> value, on every answer of the health endpoints
    headers: dict[str, str] = {}


class CompressionSettings(SettingsStruct, frozen=True):
    """``backend.compression``: gzip (and brotli, with the ``brotli`` extra) of compressible answers over ``threshold`` bytes."""

    #: compress answers when the client accepts it
    enabled: bool = True
    #: bytes an answer needs to be compressed (a streamed one of unknown size always is)
    threshold: int = 1024
    #: gzip level, 1 (fast) to 9 (small)
    level: int = 6
    #: offer br when the ``brotli`` package is installed (quality 4)
    brotli: bool = True


class AccessLogSettings(SettingsStruct, frozen=True):
    """``backend.accessLog``: one line per request on the ``kernel.access`` logger."""

    #: write the access log (whatever ``backend.logging.level`` says)
    enabled: bool = True


class RequestIdSettings(SettingsStruct, frozen=True):
    """``backend.requestId``: ``X-Request-Id`` accepted (if valid) or made, sent to the worker and returned."""

    #: give every request an id, on its log lines and its answer
    enabled: bool = True


class EdgeSettings(msgspec.Struct, frozen=True):
    """Every setting of the HTTP edge; the defaults here are the only ones."""

    #: ``backend.cors``; not set: no CORS at the gateway
    cors: CorsSettings | None = None
    #: ``backend.csp``: Content-Security-Policy directive -> sources, or false to remove it
    csp: dict[str, list[str] | bool] = {}
    #: ``backend.securityHeaders``: header -> value, or false to remove it (helmet's defaults otherwise)
    security_headers: dict[str, str | bool] = {}
    #: ``backend.rateLimit``; not set (or false): no rate limit
    rate_limit: RateLimitSettings | None = None
    #: ``backend.trustProxy`` as Express: ``true`` (trust every hop), a number of hops, or addresses
    #: and subnets (``loopback``, ``linklocal``, ``uniquelocal``, ``10.0.0.0/8``...); ``False``: none
    trust_proxy: bool | int | list[str] = False
    #: ``backend.https``; not set: plain HTTP
    https: HttpsSettings | None = None
    health: HealthSettings = HealthSettings()
    #: ``backend.dashboard``: the kernel's own page at its root, like the health endpoints
    dashboard: DashboardSettings = DashboardSettings()
    compression: CompressionSettings = CompressionSettings()
    access_log: AccessLogSettings = AccessLogSettings()
    request_id: RequestIdSettings = RequestIdSettings()


# ---------------------------------------------------------------------------- reading

_TRUST_NAMES: Final = ("loopback", "linklocal", "uniquelocal")


def _trust_proxy(raw: Any) -> bool | int | list[str]:
    key = "backend.trustProxy"
    if raw is None:
        return False
    if isinstance(raw, str):
        text = raw.strip().lower()
        if text in ("true", "false"):
            return text == "true"
        if text.isdigit():
            return int(text)
        raw = [part.strip() for part in raw.split(",") if part.strip()]
    if isinstance(raw, (bool, int)):
        if isinstance(raw, int) and not isinstance(raw, bool) and raw < 0:
            raise ConfigError(f"Invalid config: {key} must not be negative")
        return raw
    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
        raise ConfigError(f"Invalid config: {key} must be true, a number of hops, or a list of addresses")
    for entry in raw:
        if entry not in _TRUST_NAMES:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ConfigError(f"Invalid config: {key} has '{entry}', not an address, a subnet or one of "
                                  f"{', '.join(_TRUST_NAMES)}") from None  # fmt: skip
    return list(raw)


def read_edge_settings(config: HasGetOptional) -> EdgeSettings:
    """The HTTP edge's settings (see the module doc), validated."""
    cors = read_cors_settings(config)
    csp = read_csp(config)
    headers = read_security_headers(config)
    https_raw = config.get_optional("backend.https")
    https = None
    if https_raw is True or https_raw == "true":
        https = HttpsSettings()
    elif https_raw not in (None, False, "false"):
        https = convert(https_raw, "backend.https", HttpsSettings)
        if https.certificate is None:
            raise ConfigError("Invalid config: backend.https needs certificate: {cert, key}, or is true")
    compression = convert(config.get_optional("backend.compression"), "backend.compression", CompressionSettings)
    if not 1 <= compression.level <= 9 or compression.threshold < 0:
        raise ConfigError("Invalid config: backend.compression.level must be 1..9 and threshold at least 0")
    return EdgeSettings(
        cors=cors,
        csp=csp,
        security_headers=headers,
        rate_limit=read_rate_limit_settings(config),
        trust_proxy=_trust_proxy(config.get_optional("backend.trustProxy")),
        https=https,
        health=convert(config.get_optional("backend.health"), "backend.health", HealthSettings),
        dashboard=read_dashboard_settings(config),
        compression=compression,
        access_log=convert(config.get_optional("backend.accessLog"), "backend.accessLog", AccessLogSettings),
        request_id=convert(config.get_optional("backend.requestId"), "backend.requestId", RequestIdSettings),
    )

"""The HTTP edge's part of the settings schema: what every gateway does to every request and answer.

The reference system's keys, with its defaults: ``backend.cors``, ``backend.csp``,
``backend.rateLimit``, ``backend.trustProxy``, ``backend.https``, ``backend.health.headers``;
and the kernel's own: ``backend.securityHeaders``, ``backend.compression``,
``backend.accessLog``, ``backend.requestId``, ``backend.dashboard`` (the kernel's own page at the
root, as the health endpoints are). ``kernel.settings.Settings.edge`` holds them (this
module exists so that ``kernel/settings.py`` stays small); ``read_edge_settings`` reads and
validates them, a mistake is a ``ConfigError`` naming the key.

A contract module: msgspec, the standard library and ``kernel.errors`` only, no I/O.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any, Final, Literal, Protocol

import msgspec

from kernel.errors import ConfigError

__all__ = [
    "CSP_DIRECTIVES",
    "SECURITY_HEADERS",
    "AccessLogSettings",
    "Certificate",
    "CompressionSettings",
    "CorsSettings",
    "DashboardSettings",
    "EdgeSettings",
    "HealthSettings",
    "HttpsSettings",
    "PluginRateLimit",
    "RateLimitSettings",
    "RateLimitStore",
    "RequestIdSettings",
    "parse_duration",
    "read_dashboard_settings",
    "read_edge_settings",
]


class _HasGetOptional(Protocol):
    def get_optional(self, key: str) -> Any: ...


class _S(msgspec.Struct, forbid_unknown_fields=True, rename="camel", frozen=True):
    pass


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


class CorsSettings(_S, frozen=True):
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


class RateLimitStore(_S, frozen=True):
    """``backend.rateLimit.store``: counts per gateway process (``memory``) or shared in Redis."""

    #: ``memory``: counts per gateway process; ``redis``: shared by every gateway process and instance
    type: Literal["memory", "redis"] = "memory"
    #: ``redis://host:port/db``, required for ``redis``
    connection: str | None = None


class PluginRateLimit(_S, frozen=True):
    """``backend.rateLimit.plugin.<pluginId>``: that plugin's own limit; unset keys follow the global ones."""

    #: the plugin's window (seconds here; milliseconds or a duration in the config)
    window: float | None = None
    #: requests one client may send the plugin per window
    incoming_request_limit: int | None = None
    #: addresses never limited for this plugin
    ip_allow_list: list[str] | None = None
    #: answers below 400 do not count
    skip_successful_requests: bool | None = None
    #: answers of 400 and above do not count
    skip_failed_requests: bool | None = None


class RateLimitSettings(_S, frozen=True):
    """``backend.rateLimit`` (``true``: these defaults; absent or ``false``: no rate limit).

    ``window`` is in seconds here; the config gives it as milliseconds or a duration (``6s``,
    ``1m``, ``PT1M``, ``{seconds: 6}``). ``global: false`` limits only the plugins under ``plugin``.
    """

    #: limit every plugin's requests; false: only the plugins under ``plugin``
    global_: bool = True
    #: how long one count lasts (seconds here; milliseconds, ``6s``, ``PT1M`` or ``{seconds: 6}`` in the config)
    window: float = 60.0
    #: requests one client (principal or address) may send per window; more are 429
    incoming_request_limit: int = 5
    #: client addresses never limited
    ip_allow_list: list[str] = msgspec.field(default_factory=lambda: ["127.0.0.1", "0:0:0:0:0:0:0:1", "::1"])
    #: answers below 400 do not count
    skip_successful_requests: bool = False
    #: answers of 400 and above do not count
    skip_failed_requests: bool = False
    #: true: a store that fails lets requests through; false: they are 503
    pass_on_store_error: bool = False
    store: RateLimitStore = RateLimitStore()
    #: each plugin's own limit, beside the global one
    plugin: dict[str, PluginRateLimit] = {}


class Certificate(_S, frozen=True):
    """``backend.https.certificate``: PEM text (as the reference system, e.g. ``$file: cert.pem``) or a file path."""

    #: the certificate (chain): PEM text or a file path
    cert: str
    #: its private key: PEM text or a file path
    key: str


class HttpsSettings(_S, frozen=True):
    """``backend.https``: ``certificate`` from config, or ``None`` (``https: true``): a generated self-signed one."""

    #: the certificate to serve; ``https: true`` instead: a generated self-signed one in ``var/tls``
    certificate: Certificate | None = None


class HealthSettings(_S, frozen=True):
    """``backend.health``: ``headers`` added to every health answer (e.g. to tell instances apart)."""

    #: header name -> value, on every answer of the health endpoints
    headers: dict[str, str] = {}


class DashboardSettings(_S, frozen=True):
    """``backend.dashboard``: the live dashboard at ``/.kernel/dashboard`` (``kernel.dashboard``), for operators.

    The page holds no data; its snapshot (``/.kernel/dashboard/v1/snapshot``, which ``kernel status``
    reads too) needs the credentials of a principal listed in ``operators``. Secure by default: with
    no operator listed, every caller is refused (403).
    """

    #: serve the dashboard page and its snapshot (false: both answer 404)
    enabled: bool = True
    #: who may read the snapshot: principal subjects, such as `external:ops` (a static token of
    #: `backend.auth.externalAccess` with subject `ops`) or a user entity ref (`user:default/alice`);
    #: nobody when empty
    operators: list[str] = []


class CompressionSettings(_S, frozen=True):
    """``backend.compression``: gzip (and brotli, with the ``brotli`` extra) of compressible answers over ``threshold`` bytes."""

    #: compress answers when the client accepts it
    enabled: bool = True
    #: bytes an answer needs to be compressed (a streamed one of unknown size always is)
    threshold: int = 1024
    #: gzip level, 1 (fast) to 9 (small)
    level: int = 6
    #: offer br when the ``brotli`` package is installed (quality 4)
    brotli: bool = True


class AccessLogSettings(_S, frozen=True):
    """``backend.accessLog``: one line per request on the ``kernel.access`` logger."""

    #: write the access log (whatever ``backend.logging.level`` says)
    enabled: bool = True


class RequestIdSettings(_S, frozen=True):
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

_UNITS: Final = {
    "ms": 0.001, "msec": 0.001, "millisecond": 0.001, "milliseconds": 0.001,
    "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
    "m": 60.0, "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hr": 3600.0, "hrs": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "d": 86400.0, "day": 86400.0, "days": 86400.0,
}  # fmt: skip
_OBJECT_UNITS: Final = ("milliseconds", "seconds", "minutes", "hours", "days")
_ISO = re.compile(r"^P(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?$")
_HUMAN = re.compile(r"^(\d+(?:\.\d+)?)\s*([a-z]+)$")


def parse_duration(value: Any, key: str) -> float:
    """Seconds of a duration as the reference system writes one: milliseconds (a number), ``"6s"``,
    ``"2 minutes"``, ISO 8601 (``"PT1M"``) or ``{minutes: 1, seconds: 30}``."""
    if isinstance(value, bool):
        raise ConfigError(f"Invalid config: {key} must be a duration, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value) / 1000.0
    if isinstance(value, str):
        text = value.strip().lower()
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            return float(text) / 1000.0
        human = _HUMAN.match(text)
        if human and human.group(2) in _UNITS:
            return float(human.group(1)) * _UNITS[human.group(2)]
        iso = _ISO.match(value.strip().upper())
        if iso and any(iso.groups()):
            d, h, m, s = (float(g or 0) for g in iso.groups())
            return d * 86400 + h * 3600 + m * 60 + s
    if isinstance(value, dict) and value:
        total = 0.0
        for unit, amount in value.items():
            if unit not in _UNITS or (unit.endswith(("ms", "s")) is False and unit not in ("m", "h", "d")):
                raise ConfigError(f"Invalid config: {key} has unknown unit '{unit}'")
            if not isinstance(amount, (int, float)) or isinstance(amount, bool):
                raise ConfigError(f"Invalid config: {key}.{unit} must be a number")
            total += amount * _UNITS[unit]
        return total
    raise ConfigError(f"Invalid config: {key} must be a duration (milliseconds, '6s', 'PT1M' or {{seconds: 6}})")


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


def _lists(raw: Any, keys: tuple[str, ...]) -> Any:
    """The reference system reads these keys as a string or a list: a string is a comma-separated list."""
    if not isinstance(raw, dict):
        return raw
    out = dict(raw)
    for k in keys:
        if isinstance(out.get(k), str):
            out[k] = [part.strip() for part in out[k].split(",") if part.strip()]
    return out


def _convert(raw: Any, key: str, type_: type[Any]) -> Any:
    try:
        return msgspec.convert(raw if raw is not None else {}, type_, strict=False)
    except msgspec.ValidationError as exc:
        msg = str(exc).replace("`$.", f"`{key}.").replace("`$`", f"`{key}`")
        raise ConfigError(f"Invalid config under '{key}': {msg}") from None


def _rate_limit(raw: Any) -> RateLimitSettings | None:
    key = "backend.rateLimit"
    if raw is None or raw is False or raw == "false":
        return None
    if raw is True or raw == "true":
        return RateLimitSettings()
    if not isinstance(raw, dict):
        raise ConfigError(f"Invalid config: {key} must be true or an object")
    raw = dict(raw)
    if "window" in raw:
        raw["window"] = parse_duration(raw["window"], f"{key}.window")
    plugins = raw.get("plugin")
    if isinstance(plugins, dict):
        raw["plugin"] = {
            pid: {**own, "window": parse_duration(own["window"], f"{key}.plugin.{pid}.window")}
            if isinstance(own, dict) and "window" in own
            else own
            for pid, own in plugins.items()
        }
    settings: RateLimitSettings = _convert(raw, key, RateLimitSettings)
    windows = [settings.window, *(p.window for p in settings.plugin.values() if p.window is not None)]
    limits = [settings.incoming_request_limit, *(p.incoming_request_limit for p in settings.plugin.values())]
    if any(w <= 0 for w in windows):
        raise ConfigError(f"Invalid config: {key}.window must be more than 0")
    if any(n is not None and n < 0 for n in limits):
        raise ConfigError(f"Invalid config: {key}.incomingRequestLimit must not be negative")
    if settings.store.type == "redis" and not settings.store.connection:
        raise ConfigError(f"Invalid config: {key}.store of type redis needs a connection (redis://host:port)")
    return settings


def _no_true(values: Mapping[str, Any], key: str, what: str) -> None:
    for name, value in values.items():
        if value is True:
            raise ConfigError(f"Invalid config: {key}.{name} must be {what} or false (to remove it)")


def read_dashboard_settings(config: _HasGetOptional) -> DashboardSettings:
    """``backend.dashboard``, validated (the dashboard reads it on each request: it follows reloads)."""
    key = "backend.dashboard"
    settings: DashboardSettings = _convert(config.get_optional(key), key, DashboardSettings)
    for i, subject in enumerate(settings.operators):
        if not subject or subject != subject.strip():
            raise ConfigError(
                f"Invalid config: {key}.operators[{i}] must be a principal subject (such as external:ops or "
                f"user:default/alice), got {subject!r}"
            )
    return settings


def read_edge_settings(config: _HasGetOptional) -> EdgeSettings:
    """The HTTP edge's settings (see the module doc), validated."""
    cors_raw = config.get_optional("backend.cors")
    cors = None
    if cors_raw is not None:
        fields = ("origin", "methods", "allowedHeaders", "exposedHeaders")
        cors = _convert(_lists(cors_raw, fields), "backend.cors", CorsSettings)
        if not 200 <= cors.options_success_status <= 299:
            raise ConfigError("Invalid config: backend.cors.optionsSuccessStatus must be a 2xx status")
    csp = _convert(config.get_optional("backend.csp"), "backend.csp", dict[str, list[str] | bool])
    _no_true(csp, "backend.csp", "a list of sources")
    headers = _convert(config.get_optional("backend.securityHeaders"), "backend.securityHeaders", dict[str, str | bool])
    _no_true(headers, "backend.securityHeaders", "a string")
    https_raw = config.get_optional("backend.https")
    https = None
    if https_raw is True or https_raw == "true":
        https = HttpsSettings()
    elif https_raw not in (None, False, "false"):
        https = _convert(https_raw, "backend.https", HttpsSettings)
        if https.certificate is None:
            raise ConfigError("Invalid config: backend.https needs certificate: {cert, key}, or is true")
    compression = _convert(config.get_optional("backend.compression"), "backend.compression", CompressionSettings)
    if not 1 <= compression.level <= 9 or compression.threshold < 0:
        raise ConfigError("Invalid config: backend.compression.level must be 1..9 and threshold at least 0")
    return EdgeSettings(
        cors=cors,
        csp=csp,
        security_headers=headers,
        rate_limit=_rate_limit(config.get_optional("backend.rateLimit")),
        trust_proxy=_trust_proxy(config.get_optional("backend.trustProxy")),
        https=https,
        health=_convert(config.get_optional("backend.health"), "backend.health", HealthSettings),
        dashboard=read_dashboard_settings(config),
        compression=compression,
        access_log=_convert(config.get_optional("backend.accessLog"), "backend.accessLog", AccessLogSettings),
        request_id=_convert(config.get_optional("backend.requestId"), "backend.requestId", RequestIdSettings),
    )

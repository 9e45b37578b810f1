"""The ``proxy`` config key: its schema, and one endpoint's options turned into an ``Endpoint``.

```yaml
proxy:
  skipInvalidProxies: false        # true: a bad endpoint is logged and skipped, not a start-up failure
  endpoints:
    /frobs: http://api.frobsco.com/v1      # a URL: target, changeOrigin true, credentials require
    my-api:                                # a leading '/' is added
      target: https://api.myawesomeservice.com/v1   # or a list: failover in that order
      changeOrigin: true                   # Host = the target's host (false: the caller's Host)
      pathRewrite: {'^/api/proxy/my-api/v2/': '/v2/'}   # regex -> replacement, on the request path
      headers: {Authorization: "Bearer ${MY_API_TOKEN}"}   # set upstream; their names pass the filter
      allowedMethods: [GET, DELETE]        # others: 405
      allowedHeaders: [X-Request-Id]       # let through in both directions, beyond the safe list
      credentials: require                 # or forward, or dangerously-allow-unauthenticated
      ws: false                            # true: WebSockets to this route are proxied too (ws://, wss://)
      timeout: {connectSeconds: 5, readSeconds: 60}   # 504 when one expires; readSeconds null: none
      retries: {count: 1, backoffSeconds: 0.1}        # idempotent methods, connection failures only
      coolDownSeconds: 10                  # a target whose connection failed is skipped this long
      maxConcurrentRequests: 100           # more at once: 503 (default: no limit)
      ca: /etc/ssl/internal-ca.pem         # CA bundle for https targets
      secure: true                         # false: do not verify the target's certificate
```

``ProxyConfig`` is the plugin's ``config_schema`` (checked by ``kernel config check`` and by the
worker at start-up): unless ``skipInvalidProxies`` is set, every endpoint is parsed there, so a bad
one stops start-up with a message naming it. ``parse_endpoint`` is the one parser of an endpoint,
for the config and for the endpoints modules add (``kernel_proxy.extension``) alike.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal
from urllib.parse import urlsplit

import msgspec

from kernel.api import ConfigError

from .headers import HOP_BY_HOP, SAFE_HEADERS
from .rewrite import PathRewrite

__all__ = [
    "OPEN",
    "Endpoint",
    "EndpointOptions",
    "ProxyConfig",
    "normalize_key",
    "parse_endpoint",
]

Credentials = Literal["require", "forward", "dangerously-allow-unauthenticated"]
#: the credentials policy that opens an endpoint with an ``unauthenticated`` auth policy
OPEN: Final = "dangerously-allow-unauthenticated"
Seconds = Annotated[float, msgspec.Meta(gt=0, le=3600)]
_TOKEN_CHARS: Final = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class _Options(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    pass


class Timeouts(_Options, frozen=True):
    """``timeout``: seconds to connect to a target, and to wait for its answer (and between two chunks)."""

    connect_seconds: Seconds = 5.0
    read_seconds: Seconds | None = 60.0


class Retries(_Options, frozen=True):
    """``retries``: more attempts of an idempotent request after a connection failure, ``backoffSeconds`` doubling."""

    count: Annotated[int, msgspec.Meta(ge=0, le=10)] = 1
    backoff_seconds: Annotated[float, msgspec.Meta(ge=0, le=60)] = 0.1


class EndpointOptions(_Options, frozen=True):
    """One endpoint written as an object (the reference system's names, then ours)."""

    target: str | list[str]
    change_origin: bool = True
    path_rewrite: dict[str, str] | None = None
    headers: dict[str, str] = {}
    allowed_methods: list[str] | None = None
    allowed_headers: list[str] = []
    credentials: Credentials = "require"
    ws: bool = False
    timeout: Timeouts = Timeouts()
    retries: Retries = Retries()
    cool_down_seconds: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 10.0
    max_concurrent_requests: Annotated[int, msgspec.Meta(gt=0)] | None = None
    ca: str | None = None
    secure: bool = True


class ProxyConfig(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    """``proxy``: the endpoints (checked one by one, see the module doc) and whether bad ones are skipped."""

    endpoints: dict[str, Any] = {}
    skip_invalid_proxies: bool = False

    def __post_init__(self) -> None:
        if self.skip_invalid_proxies:
            return  # the plugin parses them, warning about and skipping the bad ones
        seen: dict[str, str] = {}
        for key, value in self.endpoints.items():
            try:
                prefix = normalize_key(key)
                if prefix in seen:
                    raise ConfigError(f"proxy endpoint '{key}': the same route as '{seen[prefix]}'")
                seen[prefix] = key
                parse_endpoint(key, value)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None


@dataclass(frozen=True)
class Endpoint:
    """One endpoint, ready to serve: ``prefix`` (``/frobs``) relative to the plugin's mount."""

    prefix: str
    targets: tuple[str, ...]
    change_origin: bool
    rewrite: PathRewrite | None  # None: the default (the mount and the prefix are cut)
    headers: tuple[tuple[str, str], ...]
    allowed_methods: frozenset[str] | None
    #: header names (lower case) let through to the upstream, and back to the caller
    request_allow: frozenset[str]
    response_allow: frozenset[str]
    credentials: Credentials
    ws: bool
    connect_timeout: float
    read_timeout: float | None
    retries: int
    backoff: float
    cool_down: float
    max_concurrent: int | None
    ca: str | None
    secure: bool

    @property
    def open(self) -> bool:
        return self.credentials == OPEN


def normalize_key(key: str) -> str:
    """The route of an endpoint key: a leading ``/`` added, a trailing one cut (``frobs/`` is ``/frobs``)."""
    if not isinstance(key, str) or not key.strip("/ "):
        if key == "/":
            return "/"
        raise ConfigError(f"proxy endpoint {key!r}: the route must be a non-empty path such as '/frobs'")
    route = "/" + key.strip("/")
    if any(c in route for c in "?#%\\ \t\r\n") or any(part in (".", "..", "") for part in route[1:].split("/")):
        raise ConfigError(
            f"proxy endpoint '{key}': the route must be a plain path such as '/frobs' (no '.', '..', '//', '?', '#', '%')"
        )
    return route


def parse_endpoint(key: str, value: Any) -> Endpoint:
    """An ``Endpoint`` from a key and its value (a URL string or an options object); ``ConfigError`` names it."""
    prefix = normalize_key(key)
    if isinstance(value, str):
        value = {"target": value}
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"proxy endpoint '{key}': expected a target URL or an object with 'target', got {type(value).__name__}"
        )
    try:
        opts = msgspec.convert(value, EndpointOptions, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"proxy endpoint '{key}': {str(exc).replace('`$.', '`')}") from None
    targets = tuple(_target(key, t) for t in ([opts.target] if isinstance(opts.target, str) else opts.target))
    if not targets:
        raise ConfigError(f"proxy endpoint '{key}': 'target' lists no URL")
    headers = tuple((_header_name(key, "headers", name), str(val)) for name, val in opts.headers.items())
    if any(name.lower() in HOP_BY_HOP for name, _ in headers):
        raise ConfigError(
            f"proxy endpoint '{key}': 'headers' may not set a hop-by-hop header ({', '.join(sorted(HOP_BY_HOP))})"
        )
    allowed = frozenset(_header_name(key, "allowedHeaders", h).lower() for h in opts.allowed_headers) - HOP_BY_HOP
    methods = None
    if opts.allowed_methods is not None:
        methods = frozenset(_method(key, m) for m in opts.allowed_methods)
    rewrite = None
    if opts.path_rewrite is not None:
        try:
            rewrite = PathRewrite(opts.path_rewrite)
        except ValueError as exc:
            raise ConfigError(f"proxy endpoint '{key}': pathRewrite: {exc}") from None
    if opts.ca is not None and opts.secure:
        try:
            ssl.create_default_context(cafile=opts.ca)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"proxy endpoint '{key}': ca '{opts.ca}' is not a readable CA bundle: {exc}") from None
    request_allow = SAFE_HEADERS | allowed | {name.lower() for name, _ in headers}
    if opts.credentials == "forward":
        request_allow |= {"authorization"}
    return Endpoint(
        prefix=prefix,
        targets=targets,
        change_origin=opts.change_origin,
        rewrite=rewrite,
        headers=headers,
        allowed_methods=methods,
        request_allow=request_allow,
        response_allow=SAFE_HEADERS | allowed,
        credentials=opts.credentials,
        ws=opts.ws,
        connect_timeout=opts.timeout.connect_seconds,
        read_timeout=opts.timeout.read_seconds,
        retries=opts.retries.count,
        backoff=opts.retries.backoff_seconds,
        cool_down=opts.cool_down_seconds,
        max_concurrent=opts.max_concurrent_requests,
        ca=opts.ca,
        secure=opts.secure,
    )


def _target(key: str, url: str) -> str:
    """A target URL, checked: absolute http(s), a host, no credentials, query or fragment."""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a bad port
    except ValueError:
        parts, port = None, None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.query
        or parts.fragment
        or "@" in parts.netloc
        or any(c.isspace() for c in url)
    ):
        raise ConfigError(
            f"proxy endpoint '{key}': target {url!r} is not an http(s) URL such as 'https://api.example.com/v1' "
            "(no credentials, query or fragment: set an Authorization header under 'headers')"
        )
    del port
    return url


def _header_name(key: str, option: str, name: str) -> str:
    if not name or not set(name) <= _TOKEN_CHARS:
        raise ConfigError(f"proxy endpoint '{key}': {option}: {name!r} is not a header name")
    return name


def _method(key: str, method: str) -> str:
    upper = method.upper()
    if not upper or not set(upper) <= _TOKEN_CHARS:
        raise ConfigError(f"proxy endpoint '{key}': allowedMethods: {method!r} is not an HTTP method")
    return upper

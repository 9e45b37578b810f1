"""The endpoints in force: built from the config and the modules' endpoints, replaced on reload.

``build_endpoints`` merges both sources: what modules added through the ``proxy.endpoints``
extension point, in the order they added it (a later addition overrides an earlier one), then the
config's, which win on a clash (logged). A bad endpoint raises ``ConfigError`` naming it, or with ``skipInvalidProxies`` is
logged and left out. ``EndpointTable`` matches a request path to its endpoint (the longest route
that is a path-segment prefix) and keeps one ``Pool`` per endpoint: an endpoint a reload leaves
unchanged keeps its pool and its targets' health; a changed or removed one is retired, its
connections closed once its last request is done.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kernel.api import ConfigError, Logger

from .config import Endpoint, ProxyConfig, normalize_key, parse_endpoint
from .upstream import Pool

__all__ = ["EndpointTable", "build_endpoints"]

_FROM_MODULES = "a module, through the proxy.endpoints extension point"


def build_endpoints(config: ProxyConfig, provided: Sequence[Mapping[str, Any]], logger: Logger) -> dict[str, Endpoint]:
    """Endpoints by route from the config and what modules added (``provided``, in the order added)."""
    skip = config.skip_invalid_proxies
    raw: dict[str, tuple[str, Any, str]] = {}  # route -> (key as written, value, where from)
    for mapping in provided:
        for key, value in mapping.items():
            route = _route(key, _FROM_MODULES, skip, logger)
            if route is None:
                continue
            if route in raw:
                logger.warning("proxy endpoint added twice by modules: the later one wins", endpoint=route)
            raw[route] = (key, value, _FROM_MODULES)
    from_config: set[str] = set()
    for key, value in config.endpoints.items():
        route = _route(key, "proxy.endpoints", skip, logger)
        if route is None:
            continue
        if route in from_config:
            _bad(ConfigError(f"proxy endpoint '{key}': the same route as another key of proxy.endpoints"), skip, logger)
            continue
        if route in raw:
            logger.info("proxy endpoint added by a module overridden by the config", endpoint=route)
        from_config.add(route)
        raw[route] = (key, value, "proxy.endpoints")
    endpoints: dict[str, Endpoint] = {}
    for route, (key, value, source) in raw.items():
        try:
            endpoints[route] = parse_endpoint(key, value)
        except ConfigError as exc:
            _bad(ConfigError(f"{exc} (from {source})"), skip, logger)
    return endpoints


def _route(key: Any, source: str, skip: bool, logger: Logger) -> str | None:
    try:
        return normalize_key(key)
    except ConfigError as exc:
        _bad(ConfigError(f"{exc} (from {source})"), skip, logger)
        return None


def _bad(exc: ConfigError, skip: bool, logger: Logger) -> None:
    if not skip:
        raise exc
    logger.warning("proxy endpoint skipped (proxy.skipInvalidProxies)", error=str(exc))


class EndpointTable:
    """The endpoints in force and their pools, longest route first."""

    def __init__(self, logger: Logger) -> None:
        self._logger = logger
        self._routes: list[tuple[str, Endpoint, Pool]] = []

    @property
    def endpoints(self) -> dict[str, Endpoint]:
        return {route: endpoint for route, endpoint, _ in self._routes}

    def match(self, path: str) -> tuple[Endpoint, Pool] | None:
        """The endpoint serving ``path`` (relative to the plugin's mount), with its pool."""
        for route, endpoint, pool in self._routes:
            if route == "/" or path == route or path.startswith(route + "/"):
                return endpoint, pool
        return None

    def replace(self, endpoints: Mapping[str, Endpoint]) -> None:
        """Serve ``endpoints`` from now on; pools of unchanged endpoints are kept, the others retired."""
        old = {route: (endpoint, pool) for route, endpoint, pool in self._routes}
        routes: list[tuple[str, Endpoint, Pool]] = []
        for route, endpoint in endpoints.items():
            kept = old.pop(route, None)
            if kept is not None and kept[0] == endpoint:
                routes.append((route, endpoint, kept[1]))
                continue
            if kept is not None:
                kept[1].retire()
            routes.append((route, endpoint, Pool(endpoint, self._logger)))
            self._logger.info(
                "proxy endpoint",
                endpoint=route,
                target=", ".join(endpoint.targets),
                credentials=endpoint.credentials,
            )
        for route, (_, pool) in old.items():
            pool.retire()
            self._logger.info("proxy endpoint removed", endpoint=route)
        routes.sort(key=lambda r: len(r[0]), reverse=True)
        self._routes = routes

    async def close(self) -> None:
        """Close every pool (the worker shuts down)."""
        for _, _, pool in self._routes:
            await pool.close()
        self._routes = []

"""The ``proxy`` plugin (mounted at ``/api/proxy``): ``/api/proxy/<route>/...`` goes to the route's upstream.

At start-up the endpoints come from ``proxy.endpoints`` (``kernel_proxy.config``) and from the
plugin's modules, through the ``proxy.endpoints`` extension point it registers
(``kernel_proxy.extension``; modules start before the plugin's init, the config wins a clash).
Each endpoint with ``credentials: dangerously-allow-unauthenticated`` gets an ``unauthenticated``
auth policy on its route, every other one needs credentials (the gateway checks them). After each
config reload the table is rebuilt (the modules' endpoints kept) and the auth policies follow
(opened, closed) without a restart; a reload with a bad endpoint (and no ``skipInvalidProxies``)
is refused and logged, the endpoints in force stay. Requests and WebSockets (endpoints with
``ws: true``) are served by ``kernel_proxy.forward.ProxyApp``. Its OpenAPI document describes the
endpoints in force (``kernel_proxy.openapi``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kernel.api import (
    ConfigError,
    HttpRouter,
    Lifecycle,
    Logger,
    RootConfig,
    core_services,
    create_plugin,
    read_section,
)

from .config import Endpoint, ProxyConfig
from .extension import ProvidedEndpoints, proxy_endpoints_extension_point
from .forward import ProxyApp
from .openapi import document
from .table import EndpointTable, build_endpoints

__all__ = ["plugin", "provided_endpoints"]

plugin = create_plugin("proxy", config_schema=ProxyConfig)
#: what the modules add through ``proxy.endpoints`` (one per worker process: each imports this module)
provided_endpoints = ProvidedEndpoints()
plugin.register_extension_point(proxy_endpoints_extension_point, provided_endpoints)


class _Policies:
    """The ``unauthenticated`` auth policies of the open endpoints, kept in step with the table."""

    def __init__(self, router: HttpRouter) -> None:
        self._router = router
        self._open: set[str] = set()

    def sync(self, endpoints: Mapping[str, Endpoint]) -> None:
        wanted = {route for route, endpoint in endpoints.items() if endpoint.open}
        for route in sorted(self._open - wanted):
            self._router.remove_auth_policy(route)
        for route in sorted(wanted - self._open):
            self._router.add_auth_policy(route, allow="unauthenticated")
        self._open = wanted


@plugin.init(
    router=core_services.http_router,
    logger=core_services.logger,
    config=core_services.root_config,
    lifecycle=core_services.lifecycle,
)
async def init(router: HttpRouter, logger: Logger, config: RootConfig, lifecycle: Lifecycle) -> None:
    # the modules have started (and added theirs); taken, so a second start in one process starts afresh
    provided: Sequence[Mapping[str, Any]] = provided_endpoints.take()
    table = EndpointTable(logger)
    policies = _Policies(router)
    # the worker checked the config against ProxyConfig already; a bad module endpoint raises here
    endpoints = build_endpoints(read_section(config, "proxy", ProxyConfig), provided, logger)
    table.replace(endpoints)
    policies.sync(endpoints)
    router.set_openapi(document(endpoints))
    if not endpoints:
        logger.info("no proxy endpoints configured (proxy.endpoints)")

    def reloaded(new_config: Any) -> None:
        try:
            fresh = build_endpoints(read_section(new_config, "proxy", ProxyConfig), provided, logger)
        except ConfigError as exc:
            logger.error("proxy config reload refused, keeping the endpoints in force", error=str(exc))
            return
        if fresh != table.endpoints:
            table.replace(fresh)
            policies.sync(fresh)
            router.set_openapi(document(fresh))

    config.subscribe(reloaded)
    lifecycle.add_shutdown_hook(table.close, label="proxy upstream pools")
    router.use(ProxyApp(table, logger))

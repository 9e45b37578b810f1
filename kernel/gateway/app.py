"""Assembling the gateway's ASGI app: error handling outermost, the HTTP edge, then the plugin mount and the root.

Everything under the mount goes to the ``ApiDispatcher``; everything else to a
router of the routes installed packages add through ``kernel_root_routes``
(the kernel's health endpoints among them).

The HTTP edge (``kernel.gateway.middleware``, configured by ``kernel.settings.edge``), outermost first:

1. ``ErrorMiddleware``: a failure of the edge itself still answers in the error shape;
2. ``ForwardedMiddleware`` (``backend.trustProxy``): the real client and scheme, for all below;
3. ``ObserveMiddleware``: ``X-Request-Id`` for the worker, the logs and the answer; one access-log
   line and the request metrics per request, timed over everything below, with the final status;
4. ``SecurityHeadersMiddleware``: on every answer, preflights and errors included;
5. ``CorsMiddleware``: preflights end here; CORS headers on every answer (errors too: a browser can read them);
6. ``CompressionMiddleware``: gzip/br of the final body;
7. ``RateLimitMiddleware``: its check runs in the dispatcher once the principal is known (429s pass 1-6);
8. the middleware of installed packages (``kernel_gateway_middleware``), the first listed outermost;
9. ``ErrorMiddleware`` again: an error of the dispatcher or the root becomes an answer the edge decorates;
10. ``Gateway``: the plugin mount or the root (``backend.health.headers`` on the health endpoints).

The edge is the gateway's own skeleton, assembled here in a fixed order rather than through the
hook: its order is part of the security model (CORS and headers on 429s and 401s, the access log
seeing every answer), which must not depend on the order packages load in. A layer that is off
(no ``backend.cors``, ``backend.accessLog.enabled: false``...) is not installed at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.routing import BaseRoute, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from kernel.errors import NotFoundError
from kernel.gateway import recent
from kernel.gateway.dispatcher import ApiDispatcher
from kernel.gateway.links import WorkerLinks
from kernel.gateway.middleware.compression import CompressionMiddleware
from kernel.gateway.middleware.cors import CorsMiddleware
from kernel.gateway.middleware.errors import ErrorMiddleware
from kernel.gateway.middleware.forwarded import ForwardedMiddleware
from kernel.gateway.middleware.headers import HealthHeadersMiddleware, SecurityHeadersMiddleware, security_headers
from kernel.gateway.middleware.observe import ObserveMiddleware
from kernel.gateway.middleware.ratelimit import RateLimitMiddleware, Store
from kernel.gateway.root import HEALTH
from kernel.hooktypes import GatewayMiddleware, Headers
from kernel.metrics.http import RequestMetrics
from kernel.protocol import PluginState, Principal, RolloutState, Stats
from kernel.settings import EdgeSettings


class GatewayState:
    """The ``GatewayView`` root endpoints get: this gateway's readiness, plugins and credential check."""

    def __init__(self, links: WorkerLinks, api: ApiDispatcher) -> None:
        self._table = links.table
        self._api = api

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        return self._table.readiness()

    def plugin_states(self) -> Sequence[PluginState]:
        return list(self._table.states.values())

    def stats(self) -> Stats | None:
        return self._table.stats

    def recent_errors(self) -> list[dict[str, Any]]:
        return recent.recent()

    async def authenticate(self, headers: Headers, plugin_id: str = "") -> Principal:
        principal = self._api.auth.authenticate(plugin_id, [], "/", headers)
        return principal if isinstance(principal, Principal) else await principal

    def rollouts(self) -> list[RolloutState]:
        return self._table.rollouts.latest()

    async def request_rollout(self, plugins: list[str] | None, gateways: bool, by: str) -> RolloutState:
        return await self._table.rollouts.request(plugins, gateways, by)


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    raise NotFoundError(f"No route for {scope['method']} {scope['path']}")


class Gateway:
    """Sends the plugin mount to the dispatcher and everything else to the root app."""

    def __init__(self, api: ApiDispatcher, root: ASGIApp) -> None:
        self.api = api
        self.root = root
        self.prefix = api.prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and self.api.owns(scope["path"]):
            await self.api(scope, receive, send)
        else:
            # with an app in the scope, a Starlette route raises its 405 (which the error layer
            # answers in the error shape, ``Allow`` kept) instead of answering it in plain text
            scope.setdefault("app", self)
            await self.root(scope, receive, send)


def build_app(
    api: ApiDispatcher,
    root_routes: Sequence[BaseRoute],
    *,
    dev: bool,
    edge: EdgeSettings | None = None,
    rate_limit_store: Store | None = None,
    middleware: Sequence[GatewayMiddleware] = (),
    metrics: RequestMetrics | None = None,
) -> ASGIApp:
    """The gateway's app; without ``edge``, only the plugin mount and the root behind error handling."""
    root: ASGIApp = Router(routes=list(root_routes), default=_not_found)
    if edge is not None and edge.health.headers:
        root = HealthHeadersMiddleware(root, headers=edge.health.headers, prefix=HEALTH + "/")
    app: ASGIApp = ErrorMiddleware(Gateway(api, root), dev=dev)
    if edge is None:
        return app
    for wrap in reversed(middleware):
        app = wrap(app)
    if edge.rate_limit is not None:
        assert rate_limit_store is not None, "backend.rateLimit needs a store"
        app = RateLimitMiddleware(app, settings=edge.rate_limit, store=rate_limit_store)
    c = edge.compression
    if c.enabled:
        app = CompressionMiddleware(app, threshold=c.threshold, level=c.level, brotli=c.brotli)
    if edge.cors is not None:
        app = CorsMiddleware(app, settings=edge.cors)
    headers, hsts = security_headers(edge)
    if headers or hsts:
        app = SecurityHeadersMiddleware(app, headers=headers, hsts=hsts)
    if edge.access_log.enabled or edge.request_id.enabled or metrics is not None:
        app = ObserveMiddleware(
            app, request_ids=edge.request_id.enabled, access_log=edge.access_log.enabled, metrics=metrics
        )
    if edge.trust_proxy:
        app = ForwardedMiddleware(app, trust=edge.trust_proxy)
    return ErrorMiddleware(app, dev=dev)

"""Where a scrape is answered: a listener of the metrics' own (the default), or a path for operators.

With ``backend.metrics.listener: own`` (the default: port 9464 on 127.0.0.1), the supervisor
opens that listener and every gateway serves ``backend.metrics.path`` on it, open, as exporters
do: keep it on loopback or a private network. With ``listener: main`` the metrics are served at
``path`` on the main listener, behind the gateway's credentials, to the dashboard's operators
only (``backend.dashboard.operators``): a built-in hook provider, through ``kernel_root_routes``.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from kernel.core_services import RootConfig
from kernel.hookspecs import hookimpl
from kernel.hooktypes import GatewayView
from kernel.metrics.exposition import render
from kernel.settings import MetricsSettings, read_dashboard_settings, read_section


async def scrape(view: GatewayView, request: Request) -> Response:
    body, content_type = render(view, request.headers.get("accept", ""))
    return Response(body, media_type=content_type)


def metrics_app(view: GatewayView, path: str) -> Starlette:
    """The app of the metrics' own listener: ``path`` and nothing else."""

    async def endpoint(request: Request) -> Response:
        return await scrape(view, request)

    return Starlette(routes=[Route(path, endpoint, methods=["GET"])])


@hookimpl
def kernel_root_routes(gateway: GatewayView, config: RootConfig) -> Sequence[BaseRoute]:
    """With ``backend.metrics.listener: main``: the metrics at ``path`` on the main listener, for operators."""
    settings = read_section(config, "backend.metrics", MetricsSettings)
    if not settings.enabled or settings.listener != "main":
        return []

    async def endpoint(request: Request) -> Response:
        from kernel.dashboard.routes import require_operator

        await require_operator(gateway, request.scope["headers"], read_dashboard_settings(config), what="the metrics")
        return await scrape(gateway, request)

    return [Route(settings.path, endpoint, methods=["GET"])]

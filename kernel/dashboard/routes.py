"""The dashboard's routes at the gateway's root: the page, its static files, and the snapshot.

``GET /.kernel/dashboard`` is the page: an HTML shell holding no data, with its script and style
sheet as files of their own (``static/``), so that it renders under the kernel's
Content-Security-Policy (``'self'`` scripts and styles, nothing inline). The page asks for a token
once and reads ``GET /.kernel/dashboard/v1/snapshot`` with it every second.

The snapshot needs credentials (401 without, as every plugin route) and an operator: a principal
whose subject ``backend.dashboard.operators`` lists; anyone else gets 403, which says how to
become one. Both are read from the live config on each request, so a reload applies at once;
``backend.dashboard.enabled: false`` answers 404 everywhere here.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

import kernel.dashboard.paths as paths
from kernel import __version__
from kernel.core_services import RootConfig
from kernel.dashboard.paths import PAGE, SNAPSHOT
from kernel.dashboard.snapshot import build_snapshot
from kernel.errors import NotAllowedError, NotFoundError
from kernel.hooktypes import GatewayView, Headers
from kernel.protocol import Principal
from kernel.settings import DashboardSettings, GatewaySettings, read_dashboard_settings, read_section

STATIC = f"{PAGE}/static"
#: the page's files: name -> content type (the page itself is ``index.html``)
FILES = {
    "index.html": "text/html; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "charts.js": "text/javascript; charset=utf-8",
}
#: answers of the page's files: revalidated on each load (an upgraded kernel serves its own)
FILE_HEADERS = {"cache-control": "no-cache"}


def _files() -> dict[str, bytes]:
    folder = Path(paths.__file__).with_name("static")  # the package's own folder
    return {name: (folder / name).read_bytes() for name in FILES}


async def require_operator(
    gateway: GatewayView, headers: Headers, settings: DashboardSettings, what: str = "the dashboard"
) -> Principal:
    """The caller's principal if it is an operator (``backend.dashboard.operators``); 401 without valid
    credentials, 403 for anyone else. Also guards the metrics on the main listener (``kernel.metrics``)."""
    principal = await gateway.authenticate(headers)
    if not settings.operators:
        raise NotAllowedError(
            f"No operator is configured: list the principals that may read {what} under "
            "backend.dashboard.operators (such as external:ops for a static token with subject ops)"
        )
    if principal.subject not in settings.operators:
        who = principal.subject or principal.type
        raise NotAllowedError(
            f"'{who}' is not an operator: only the principals of backend.dashboard.operators may read {what}"
        )
    return principal


def dashboard_routes(gateway: GatewayView, config: RootConfig) -> list[BaseRoute]:
    files = _files()

    def enabled(request: Request) -> DashboardSettings:
        settings = read_dashboard_settings(config)
        if not settings.enabled:
            raise NotFoundError(f"No route for {request.method} {request.url.path}")
        return settings

    async def page(request: Request) -> Response:
        enabled(request)
        return Response(files["index.html"], media_type=FILES["index.html"], headers=FILE_HEADERS)

    async def static(request: Request) -> Response:
        enabled(request)
        name = request.path_params["name"]
        if name not in FILES or name == "index.html":
            raise NotFoundError(f"No file {name} in the dashboard")
        return Response(files[name], media_type=FILES[name], headers=FILE_HEADERS)

    async def snapshot(request: Request) -> JSONResponse:
        settings = enabled(request)
        await require_operator(gateway, request.scope["headers"], settings)
        body = build_snapshot(
            gateway.plugin_states(),
            gateway.stats(),
            gateway.recent_errors(),
            version=__version__,
            mount=read_section(config, "backend.gateway", GatewaySettings).mount.rstrip("/"),
            now=time.time(),
            gateway_pid=os.getpid(),
        )
        return JSONResponse(body, headers={"cache-control": "no-store"})

    return [
        Route(PAGE, page, methods=["GET"]),
        Route(STATIC + "/{name}", static, methods=["GET"]),
        Route(SNAPSHOT, snapshot, methods=["GET"]),
    ]

"""The kernel's own endpoints at the gateway's root: liveness, readiness, instance metadata, the OpenAPI index.

Liveness is always 200 and lists failed plugins (``failed``: id -> reason). Readiness is 503
while a plugin has no ready worker, except a failed plugin allowed to fail
(``onPluginBootFailure: continue``), which readiness lists under ``failed`` and answers 200.

A built-in hook provider: these routes come through ``kernel_root_routes``
like those of any installed package (metrics, dashboards, ...).
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from kernel import __version__
from kernel.core_services import RootConfig
from kernel.hookspecs import hookimpl
from kernel.hooktypes import GatewayView
from kernel.openapi.index import index_route

HEALTH = "/.kernel/health/v1"
INSTANCE = "/.kernel/instance/v1/plugins"


@hookimpl
def kernel_root_routes(gateway: GatewayView, config: RootConfig) -> Sequence[BaseRoute]:
    async def liveness(request: Request) -> JSONResponse:
        failed = {p.id: p.reason or p.state for p in gateway.plugin_states() if p.state == "failed"}
        return JSONResponse({"status": "ok", "failed": failed} if failed else {"status": "ok"})

    async def readiness(request: Request) -> JSONResponse:
        ready, body = gateway.readiness()
        return JSONResponse(body, status_code=200 if ready else 503)

    async def instance(request: Request) -> JSONResponse:
        await gateway.authenticate(request.scope["headers"])  # 401 without credentials
        plugins = [
            {
                "id": p.id,
                "distribution": p.distribution,
                "version": p.version,
                "state": p.state,
                "reason": p.reason,
                "workers": p.worker_states,
            }
            for p in sorted(gateway.plugin_states(), key=lambda p: p.id)
        ]
        return JSONResponse({"kernel": {"version": __version__}, "plugins": plugins})

    return [
        Route(f"{HEALTH}/liveness", liveness),
        Route(f"{HEALTH}/readiness", readiness),
        Route(INSTANCE, instance),
        index_route(gateway, config),  # every plugin's OpenAPI document (kernel.openapi.index)
    ]

"""``GET /.kernel/openapi/v1``: every plugin's OpenAPI document, for the operator (at the gateway's root).

A plugin has a document when its worker opened ``/openapi.json`` (an ``unauthenticated`` auth
policy on exactly that path, which ``kernel.worker.router`` adds with the document), so the gateway
knows it from the worker table alone, without asking a worker. Each entry names the plugin, its
state and the document's URL: ``backend.baseUrl`` (else the origin the request came to) + the
plugin's path (``kernel.plugin_paths``: ``<mount>/<pluginId>`` by default) + ``/openapi.json``.

Credentials are needed (a user or a service token, as for the instance endpoint): each document is
open, but the index enumerates the installed plugins, which the instance endpoint also keeps from
anonymous callers. Served by ``kernel.gateway.root`` through ``kernel_root_routes``.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kernel.core_services import RootConfig
from kernel.hooktypes import GatewayView
from kernel.openapi_spec import OPENAPI_PATH
from kernel.plugin_paths import path_of
from kernel.protocol import AuthPolicy
from kernel.settings import read_settings

INDEX = "/.kernel/openapi/v1"
DOCUMENT_POLICY = AuthPolicy(OPENAPI_PATH, "unauthenticated")


def index_route(gateway: GatewayView, config: RootConfig) -> Route:
    async def index(request: Request) -> JSONResponse:
        await gateway.authenticate(request.scope["headers"])  # 401 without credentials
        settings = read_settings(config)
        origin = (settings.base_url or str(request.base_url)).rstrip("/")
        mount = settings.gateway.mount
        plugins: list[dict[str, Any]] = [
            {"id": p.id, "state": p.state, "url": f"{origin}{path_of(p.id, mount)}{OPENAPI_PATH}"}
            for p in sorted(gateway.plugin_states(), key=lambda p: p.id)
            if DOCUMENT_POLICY in p.policies
        ]
        return JSONResponse({"plugins": plugins}, headers={"cache-control": "no-store"})

    return Route(INDEX, index, methods=["GET"])

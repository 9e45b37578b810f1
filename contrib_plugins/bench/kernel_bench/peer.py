"""Plugin ``bench-peer``: calls the ``bench`` plugin through the gateway with plugin tokens.

- ``GET /api/bench-peer/p2p``      calls ``GET /api/bench/private/hello`` as ``bench-peer`` and answers its JSON
- ``GET /api/bench-peer/token``    a plugin token of ``bench-peer`` for ``bench`` (to load that route with it)

Both open (``unauthenticated``): a benchmark fixture, not a plugin to install.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from kernel.api import Auth, HttpRouter, PluginClient, core_services, create_plugin

plugin = create_plugin("bench-peer")


@plugin.init(router=core_services.http_router, auth=core_services.auth, client=core_services.plugin_client)
async def init(router: HttpRouter, auth: Auth, client: PluginClient) -> None:
    async def p2p(request: Request) -> Response:
        answer = await client.request("bench", "GET", "/private/hello")
        return Response(answer.content, media_type="application/json")

    async def token(request: Request) -> PlainTextResponse:
        own = await auth.get_own_service_credentials()
        return PlainTextResponse(await auth.get_plugin_request_token(on_behalf_of=own, target_plugin_id="bench"))

    router.add_route("/p2p", p2p, methods=["GET"])
    router.add_route("/token", token, methods=["GET"])
    router.add_auth_policy("/", allow="unauthenticated")

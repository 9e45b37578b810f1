"""The example plugin: ``GET /api/hello/hello`` (open), ``GET /api/hello/whoami`` (protected)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from kernel.api import HttpRouter, Logger, core_services, create_plugin, principal_of

plugin = create_plugin("hello")


@plugin.init(router=core_services.http_router, logger=core_services.logger)
async def init(router: HttpRouter, logger: Logger) -> None:
    async def hello(request: Request) -> JSONResponse:
        name = request.query_params.get("name", "world")
        return JSONResponse({"message": f"hello, {name}"})

    async def whoami(request: Request) -> JSONResponse:
        p = principal_of(request)
        return JSONResponse({"type": p.type, "subject": p.subject})

    router.add_route("/hello", hello, methods=["GET"])
    router.add_route("/whoami", whoami, methods=["GET"])
    router.add_auth_policy("/hello", allow="unauthenticated")
    logger.info("hello plugin ready")

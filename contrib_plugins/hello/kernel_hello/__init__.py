"""The example plugin: ``GET /api/hello/hello`` (open), ``GET /api/hello/whoami`` (protected).

Its OpenAPI document is built from the routes' declared types (``GET /api/hello/openapi.json``),
and requests are checked against it (``?name=`` of 1-100 characters): a 400 ``InputError`` otherwise.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse

from kernel.api import HttpRouter, Logger, OpenApi, Operation, core_services, create_plugin, principal_of


class HelloQuery(msgspec.Struct):
    #: who to greet
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] = "world"


class Greeting(msgspec.Struct):
    message: str


class Caller(msgspec.Struct):
    """Who called: the principal the gateway verified."""

    type: Literal["none", "user", "service"]
    subject: str


plugin = create_plugin(
    "hello",
    openapi=OpenApi(title="hello", description="The example plugin", validate=True),
)


@plugin.init(router=core_services.http_router, logger=core_services.logger)
async def init(router: HttpRouter, logger: Logger) -> None:
    async def hello(request: Request) -> JSONResponse:
        name = request.query_params.get("name", "world")
        return JSONResponse({"message": f"hello, {name}"})

    async def whoami(request: Request) -> JSONResponse:
        p = principal_of(request)
        return JSONResponse({"type": p.type, "subject": p.subject})

    router.add_route(
        "/hello",
        hello,
        methods=["GET"],
        openapi=Operation(summary="A greeting", query_params=HelloQuery, response=Greeting),
    )
    router.add_route(
        "/whoami",
        whoami,
        methods=["GET"],
        openapi=Operation(summary="Who the caller is", response=Caller, errors={401: "No credentials"}),
    )
    router.add_auth_policy("/hello", allow="unauthenticated")
    logger.info("hello plugin ready")

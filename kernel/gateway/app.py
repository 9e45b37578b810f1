"""Assembling the gateway's ASGI app: error handling outermost, then root endpoints and the API."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from kernel import __version__
from kernel.errors import NotFoundError
from kernel.gateway.auth import Authenticator
from kernel.gateway.dispatch import ApiDispatcher
from kernel.gateway.middleware.errors import ErrorMiddleware
from kernel.gateway.pool import WorkerPool

HEALTH = "/.kernel/health/v1"
INSTANCE = "/.kernel/instance/v1/plugins"


def root_app(pool: WorkerPool, auth: Authenticator) -> Router:
    """Endpoints outside the plugin mount: liveness, readiness, instance metadata."""

    async def liveness(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readiness(request: Request) -> JSONResponse:
        ready, body = pool.readiness()
        return JSONResponse(body, status_code=200 if ready else 503)

    async def instance(request: Request) -> JSONResponse:
        auth.authenticate("", [], request.url.path, request.scope["headers"])  # 401 without credentials
        plugins = [
            {
                "id": p.id,
                "distribution": p.distribution,
                "version": p.version,
                "state": p.state,
                "reason": p.reason,
                "workers": p.worker_states,
            }
            for p in sorted(pool.states.values(), key=lambda p: p.id)
        ]
        return JSONResponse({"kernel": {"version": __version__}, "plugins": plugins})

    async def not_found(scope: Scope, receive: Receive, send: Send) -> None:
        raise NotFoundError(f"No route for {scope['method']} {scope['path']}")

    return Router(
        routes=[
            Route(f"{HEALTH}/liveness", liveness),
            Route(f"{HEALTH}/readiness", readiness),
            Route(INSTANCE, instance),
        ],
        default=not_found,
    )


class Gateway:
    """Sends the plugin mount to the dispatcher and everything else to the root app."""

    def __init__(self, api: ApiDispatcher, root: ASGIApp) -> None:
        self.api = api
        self.root = root
        self.prefix = api.prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.prefix):
            await self.api(scope, receive, send)
        else:
            await self.root(scope, receive, send)


def build_app(pool: WorkerPool, api: ApiDispatcher, *, dev: bool) -> ASGIApp:
    return ErrorMiddleware(Gateway(api, root_app(pool, api.auth)), dev=dev)

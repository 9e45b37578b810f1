"""Assembling the gateway's ASGI app: error handling outermost, then the plugin mount and the root.

Everything under the mount goes to the ``ApiDispatcher``; everything else to a
router of the routes installed packages add through ``kernel_root_routes``
(the kernel's health endpoints among them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.routing import BaseRoute, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from kernel.errors import NotFoundError
from kernel.gateway.middleware.errors import ErrorMiddleware
from kernel.gateway.routing import ApiDispatcher
from kernel.gateway.workers import WorkerPool
from kernel.hooktypes import Headers
from kernel.protocol import PluginState, Principal


class GatewayState:
    """The ``GatewayView`` root endpoints get: this gateway's readiness, plugins and credential check."""

    def __init__(self, pool: WorkerPool, api: ApiDispatcher) -> None:
        self._pool = pool
        self._api = api

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        return self._pool.readiness()

    def plugin_states(self) -> Sequence[PluginState]:
        return list(self._pool.states.values())

    async def authenticate(self, headers: Headers, plugin_id: str = "") -> Principal:
        principal = self._api.auth.authenticate(plugin_id, [], "/", headers)
        return principal if isinstance(principal, Principal) else await principal


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    raise NotFoundError(f"No route for {scope['method']} {scope['path']}")


class Gateway:
    """Sends the plugin mount to the dispatcher and everything else to the root app."""

    def __init__(self, api: ApiDispatcher, root: ASGIApp) -> None:
        self.api = api
        self.root = root
        self.prefix = api.prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and scope["path"].startswith(self.prefix):
            await self.api(scope, receive, send)
        else:
            await self.root(scope, receive, send)


def build_app(api: ApiDispatcher, root_routes: Sequence[BaseRoute], *, dev: bool) -> ASGIApp:
    return ErrorMiddleware(Gateway(api, Router(routes=list(root_routes), default=_not_found)), dev=dev)

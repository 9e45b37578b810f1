"""The plugin's http router: Starlette routing plus the auth policies the gateway enforces.

Policies may change after start-up (a proxy endpoint opened by a config reload): once the
worker serves, ``on_change`` sends every change on to the gateways.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

from starlette.routing import BaseRoute, Mount, Route, Router, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from kernel.errors import NotFoundError
from kernel.protocol import AuthPolicy

_ALLOWED = ("unauthenticated", "user-cookie")


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    raise NotFoundError(f"no route for {scope.get('method', 'WebSocket')} {scope['path']}")


class PluginRouter:
    """Implements ``kernel.api.HttpRouter`` inside a worker."""

    def __init__(self, plugin_id: str) -> None:
        self.plugin_id = plugin_id
        self._routes: list[BaseRoute] = []
        self._fallback: ASGIApp | None = None
        self.policies: list[AuthPolicy] = []
        #: called with the new list after each change, once the worker serves
        self.on_change: Callable[[list[AuthPolicy]], None] | None = None

    def add_route(
        self,
        path: str,
        endpoint: Callable[..., Any],
        *,
        methods: Sequence[str] | None = None,
        name: str | None = None,
    ) -> None:
        self._routes.append(Route(path, endpoint, methods=list(methods) if methods else None, name=name))

    def add_websocket_route(self, path: str, endpoint: Callable[..., Any], *, name: str | None = None) -> None:
        self._routes.append(WebSocketRoute(path, endpoint, name=name))

    def mount(self, path: str, app: ASGIApp) -> None:
        self._routes.append(Mount(path, app=app))

    def use(self, app: ASGIApp) -> None:
        """Serve every request no route matched with ``app`` (any ASGI app)."""
        self._fallback = app

    def add_auth_policy(self, path: str, allow: Literal["unauthenticated", "user-cookie"]) -> None:
        if allow not in _ALLOWED:
            raise ValueError(f"plugin '{self.plugin_id}': auth policy {allow!r} for {path!r} must be one of {_ALLOWED}")
        if not path.startswith("/"):
            raise ValueError(f"plugin '{self.plugin_id}': auth policy path {path!r} must start with '/'")
        policy = AuthPolicy(path, allow)
        if policy not in self.policies:
            self.policies.append(policy)
            self._changed()

    def remove_auth_policy(self, path: str) -> bool:
        """Close ``path`` again (every policy on exactly that path); false if it had none."""
        kept = [p for p in self.policies if p.path != path]
        if len(kept) == len(self.policies):
            return False
        self.policies[:] = kept
        self._changed()
        return True

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(list(self.policies))

    def build(self) -> ASGIApp:
        """The ASGI app serving the plugin's routes, paths relative to its mount."""
        if not self._routes and self._fallback is not None:
            return self._fallback
        return Router(routes=self._routes, default=self._fallback or _not_found)

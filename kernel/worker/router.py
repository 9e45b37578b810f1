"""The plugin's http router: Starlette routing plus the auth policies the gateway enforces.

Policies may change after start-up (a proxy endpoint opened by a config reload): once the
worker serves, ``on_change`` sends every change on to the gateways.

A plugin with an OpenAPI document (``create_plugin(..., openapi=...)`` or ``set_openapi``) gets
``/openapi.json`` (``kernel.openapi``): built from the document and the routes when the app is
built, open to anyone (an ``unauthenticated`` policy), and, with ``validate=True``, every request to
a documented operation checked against it before the handler.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route, Router, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from kernel.errors import NotFoundError, PluginDeclarationError
from kernel.openapi.document import ApiDocument, DocumentedRoute, build_document
from kernel.openapi.validation import RequestValidator, ValidatingApp
from kernel.openapi_spec import OPENAPI_PATH, OpenApi, Operation
from kernel.protocol import AuthPolicy

_ALLOWED = ("unauthenticated", "user-cookie")
#: the plugin's external base URL (``None`` when no discovery service says it)
BaseUrl = Callable[[], Awaitable[str | None]]


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    raise NotFoundError(f"no route for {scope.get('method', 'WebSocket')} {scope['path']}")


class PluginRouter:
    """Implements ``kernel.api.HttpRouter`` inside a worker."""

    def __init__(self, plugin_id: str, *, openapi: OpenApi | None = None, base_url: BaseUrl | None = None) -> None:
        self.plugin_id = plugin_id
        self._routes: list[BaseRoute] = []
        self._fallback: ASGIApp | None = None
        self.policies: list[AuthPolicy] = []
        #: called with the new list after each change, once the worker serves
        self.on_change: Callable[[list[AuthPolicy]], None] | None = None
        self.openapi = openapi
        self.base_url = base_url
        self._documented: list[DocumentedRoute] = []
        #: the built document and its validator, once ``build`` ran (again after a later ``set_openapi``)
        self.document: ApiDocument | None = None
        self.validator: RequestValidator | None = None
        self._built: Router | None = None
        self._validating = False

    def add_route(
        self,
        path: str,
        endpoint: Callable[..., Any],
        *,
        methods: Sequence[str] | None = None,
        name: str | None = None,
        openapi: Operation | None = None,
    ) -> None:
        if openapi is not None and not isinstance(openapi, Operation):
            raise PluginDeclarationError(f"plugin '{self.plugin_id}': route {path!r}: openapi must be an Operation")
        route = Route(path, endpoint, methods=list(methods) if methods else None, name=name)
        self._routes.append(route)
        declared = tuple(m.upper() for m in methods) if methods else tuple(sorted(route.methods or ("GET",)))
        self._documented.append(DocumentedRoute(path, declared, openapi))

    def add_websocket_route(self, path: str, endpoint: Callable[..., Any], *, name: str | None = None) -> None:
        self._routes.append(WebSocketRoute(path, endpoint, name=name))

    def mount(self, path: str, app: ASGIApp) -> None:
        self._routes.append(Mount(path, app=app))

    def use(self, app: ASGIApp) -> None:
        """Serve every request no route matched with ``app`` (any ASGI app)."""
        self._fallback = app

    def set_openapi(self, openapi: OpenApi) -> None:
        """Attach (or replace) the plugin's OpenAPI document; after start-up too (a document built from config)."""
        if not isinstance(openapi, OpenApi):
            raise PluginDeclarationError(f"plugin '{self.plugin_id}': set_openapi takes an OpenApi, not {openapi!r}")
        if self._built is not None and openapi.validate and not self._validating:
            raise PluginDeclarationError(
                f"plugin '{self.plugin_id}': request validation can be switched on only before start-up "
                "(declare OpenApi(validate=True) in create_plugin or in the plugin's init)"
            )
        self.openapi = openapi
        if self._built is not None:  # serving already: the new document (and validator) from now on
            self._serve_openapi(self._built)

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
        router = Router(routes=_joined(self._routes), default=self._fallback or _not_found)
        self._built = router
        if self.openapi is not None:
            self._serve_openapi(router)
        elif not self._routes and self._fallback is not None:
            return self._fallback
        if self.openapi is not None and self.openapi.validate:
            self._validating = True
            return ValidatingApp(router, lambda: self.validator)
        return router

    def _serve_openapi(self, router: Router) -> None:
        """Build the document (and its validator) and serve it at ``/openapi.json``, open to anyone."""
        assert self.openapi is not None
        document = ApiDocument(build_document(self.plugin_id, self.openapi, self._documented))
        label = f"plugin '{self.plugin_id}'"
        self.validator = RequestValidator(document.document, label) if self.openapi.validate else None
        self.document = document
        if not any(isinstance(r, Route) and r.path == OPENAPI_PATH for r in router.routes):
            router.routes.insert(0, Route(OPENAPI_PATH, self._openapi_json, methods=["GET"], name="openapi"))
        self.add_auth_policy(OPENAPI_PATH, allow="unauthenticated")

    async def _openapi_json(self, request: Request) -> Response:
        assert self.document is not None
        server = await self.base_url() if self.base_url is not None else None
        body = self.document.render(self.policies, server or request.scope.get("root_path", "") or "/")
        return Response(body, media_type="application/json", headers={"cache-control": "no-cache"})


class _ByMethod:
    """The endpoints of the routes of one path, by method (the route in front has checked the method)."""

    def __init__(self, apps: dict[str, ASGIApp]) -> None:
        self.apps = apps

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.apps[scope["method"]](scope, receive, send)


def _joined(routes: Sequence[BaseRoute]) -> list[BaseRoute]:
    """``routes``, those of one path with other methods joined into one route where the first stood.

    Starlette tries routes in turn, and a method one route of a path lacks is a 405 naming only that
    route's methods; joined, ``Allow`` names every method of the path (RFC 9110), as the document does.
    """
    by_path: dict[str, list[Route]] = {}
    for route in routes:
        if isinstance(route, Route) and route.methods:
            by_path.setdefault(route.path, []).append(route)
    out: list[BaseRoute] = []
    named: list[BaseRoute] = []  # the joined ones under their own names, last (``url_path_for``)
    for route in routes:
        same = by_path.get(route.path, []) if isinstance(route, Route) else []
        if len(same) < 2:
            out.append(route)
            continue
        if route is not same[0]:
            continue
        apps: dict[str, ASGIApp] = {}
        for each in same:  # a method two routes of the path share goes to the first, as before
            for method in each.methods or ():
                apps.setdefault(method, each.app)
        out.append(Route(route.path, _ByMethod(apps), methods=list(apps), name=route.name))
        named += [each for each in same[1:] if each.name != route.name]
    return out + named

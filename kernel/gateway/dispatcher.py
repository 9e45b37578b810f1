"""``/api/<pluginId>/<rest>``: find the plugin, check credentials, open a stream to a worker.

The order is the security model: a path with ``.``/``..`` segments is refused,
the plugin must have a ready worker, the caller's credentials are checked
against the plugin's auth policies, the body size against the limit — all
before any byte reaches plugin code. Once the credentials are known, the admission check the
edge put in the scope (``kernel.admission``: the rate limit) decides whether the request goes on,
and the scope records the plugin and the principal (``kernel.plugin``, ``kernel.principal``) for
the access log. The answer itself is the stream's job
(``kernel.gateway.relay``). A WebSocket handshake passes the same checks
(no body) and becomes a ``GatewaySocket`` (``kernel.gateway.websockets``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.types import Receive, Scope, Send

from kernel import plugin_paths
from kernel.errors import (
    AuthenticationError,
    ConfigError,
    InputError,
    NotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
    ServiceUnavailableError,
)
from kernel.gateway.auth import Authenticator
from kernel.gateway.links import WorkerLinks
from kernel.gateway.relay import ClientGone, WorkerGone, WorkerLink
from kernel.gateway.table import PluginRoute
from kernel.gateway.websockets import GatewaySocket, GatewayStopping
from kernel.protocol import Principal, RequestHead, encode
from kernel.scope_keys import ADMISSION, PLUGIN, PRINCIPAL
from kernel.settings import WorkerLimits

S = TypeVar("S")
log = logging.getLogger("kernel.gateway")
#: the scope key of the path the request's plugin is served at (its ASGI ``root_path`` in the worker)
PLUGIN_PATH = "kernel.plugin_path"


class ApiDispatcher:
    """The ASGI app serving everything under the plugin mount."""

    def __init__(
        self,
        links: WorkerLinks,
        auth: Authenticator,
        *,
        mount: str,
        timeout: float,
        max_body: int,
        worker_wait: float = 5.0,
        limits: Callable[[str], WorkerLimits] = lambda plugin_id: WorkerLimits(),
        lowest_in_flight: int = WorkerLimits().max_in_flight,
    ) -> None:
        self.links = links
        self.table = links.table
        self.worker_wait = worker_wait
        self.limits = limits
        #: below this many streams on a worker no plugin's limit can apply (the smallest limit of all)
        self._max_in_flight = lowest_in_flight or 2**62
        self.auth = auth
        self.prefix = mount.rstrip("/") + "/"
        self._paths: dict[str, str] = {}
        self._path_ids: tuple[str, ...] | None = None
        self.timeout = timeout
        self.max_body = max_body
        self.inflight = 0
        #: open WebSockets, closed with 1001 when this gateway stops
        self.sockets: set[GatewaySocket] = set()

    def _split(self, path: str) -> tuple[str, str, str] | None:
        """The plugin id, its path and the path within the plugin, for a path some plugin may serve."""
        if plugin_paths.chosen() is None:  # the common case: <mount>/<pluginId>/<rest>
            if not path.startswith(self.prefix):
                return None
            plugin_id, _sep, rest = path[len(self.prefix) :].partition("/")
            return plugin_id, self.prefix + plugin_id, "/" + rest
        paths = self._plugin_paths()
        probe = path
        while probe:  # the longest plugin path the request's path is in
            owner = paths.get(probe)
            if owner is not None:
                return owner, probe, path[len(probe) :] or "/"
            probe = probe.rpartition("/")[0]
        return None

    def _plugin_paths(self) -> dict[str, str]:
        """Path -> plugin id of the plugins the table knows, as ``getPath`` chose (rebuilt when they change)."""
        ids = tuple(self.table.plugins)
        if ids != self._path_ids:
            paths: dict[str, str] = {}
            for plugin_id in ids:
                try:
                    paths[plugin_paths.path_of(plugin_id, self.prefix)] = plugin_id
                except ConfigError as exc:
                    log.error("%s: plugin '%s' is not served", exc, plugin_id)
            self._paths, self._path_ids = paths, ids
        return self._paths

    def owns(self, path: str) -> bool:
        """Whether ``path`` is a plugin's (else it is for the root routes)."""
        if plugin_paths.chosen() is None:
            return path.startswith(self.prefix)
        return self._split(path) is not None

    def _route(self, path: str) -> tuple[str, str, str, PluginRoute]:
        """The plugin id, its path, the path within the plugin and its route; refused before any credential check."""
        found = self._split(path)
        if found is None:
            raise NotFoundError(f"No plugin serves {path}")
        plugin_id, base, rest = found
        if "/." in rest and _has_dot_segment(rest):
            # "/open/../private" would pass the policy of "/open" and be resolved by the plugin
            raise InputError("Request paths must not contain '.' or '..' segments")
        table = self.table
        if not table.accepting:
            raise ServiceUnavailableError("The server is shutting down" if table.seen else "The server is starting")
        route = table.plugins.get(plugin_id)
        if route is None:
            raise NotFoundError(f"No plugin with id '{plugin_id}'")
        return plugin_id, base, rest, route

    async def _principal(self, scope: Scope, plugin_id: str, route: PluginRoute, rest: str, headers: Any) -> Principal:
        admission = scope.get(ADMISSION)
        try:
            principal = self.auth.authenticate(plugin_id, route.policies, rest, headers)
            if type(principal) is not Principal:  # not verified before: the verifiers may fetch keys
                principal = await principal  # type: ignore[misc]
        except (AuthenticationError, NotAllowedError):
            if admission is not None:
                await admission(scope, plugin_id, None)  # refused credentials count for the address
            raise
        scope[PRINCIPAL] = principal
        if admission is not None:
            await admission(scope, plugin_id, principal)
        return principal

    async def _admit(self, scope: Scope, path: str) -> tuple[str, PluginRoute, WorkerLink, Principal]:
        """A request's or a handshake's way in: its plugin, a worker with room, then its credentials."""
        plugin_id, base, rest, route = self._route(path)
        scope[PLUGIN_PATH] = base
        scope[PLUGIN] = plugin_id
        worker = route.pick()
        if worker is None:  # before auth: a plugin never started has no known policies
            route, worker = await self._wait_for_worker(plugin_id)
        if worker.inflight >= self._max_in_flight:  # the common case skips the per-plugin lookup
            route, worker = await self._worker_with_room(plugin_id, route, worker)
        principal = await self._principal(scope, plugin_id, route, rest, scope["headers"])
        return plugin_id, route, worker, principal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self.websocket(scope, receive, send)
            return
        path: str = scope["path"]
        plugin_id, route, worker, principal = await self._admit(scope, path)
        headers = scope["headers"]
        declared = _content_length(headers)
        if declared is not None and declared > self.max_body:
            raise PayloadTooLargeError(f"Request body of {declared} bytes is over the limit of {self.max_body}")
        first = await receive()
        body = first.get("body", b"")
        more = first.get("more_body", False)
        if len(body) > self.max_body:
            raise PayloadTooLargeError(f"Request body is over the limit of {self.max_body} bytes")
        client = scope.get("client")

        def head(sid: int) -> bytes:
            return encode(
                RequestHead(
                    sid,
                    scope["method"],
                    path,
                    scope["query_string"],
                    headers,
                    tuple(client) if client else None,
                    scope["scheme"],
                    principal,
                    body,
                    more,
                    scope[PLUGIN_PATH],
                    scope["http_version"],
                    raw_path=scope.get("raw_path") or b"",
                )
            )

        stream = await self._open(plugin_id, route, worker, self.links.open, head)
        self.inflight += 1
        upload = None
        try:
            if more:
                upload = asyncio.get_running_loop().create_task(stream.upload(receive, len(body), self.max_body))
            await stream.answer(send, receive, self.timeout, uploading=upload is not None)
        except ClientGone:
            stream.abandon()  # nobody to answer: just stop the worker's handler
        except BaseException:
            stream.abandon()
            raise
        finally:
            self.inflight -= 1
            self.links.close_stream(stream)
            if upload is not None and not upload.done():
                upload.cancel()

    async def websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A WebSocket handshake: the same checks as a request, then a socket bound to one worker."""
        if (await receive())["type"] != "websocket.connect":
            return  # the client left before the handshake
        path: str = scope["path"]
        plugin_id, route, worker, principal = await self._admit(scope, path)
        headers = scope["headers"]
        client = scope.get("client")
        scheme = "https" if scope.get("scheme") == "wss" else "http"

        def head(sid: int) -> bytes:
            return encode(
                RequestHead(
                    sid, "GET", path, scope["query_string"], headers, tuple(client) if client else None, scheme,
                    principal, root_path=scope[PLUGIN_PATH], http_version=scope.get("http_version", "1.1"),
                    websocket=True, raw_path=scope.get("raw_path") or b"",
                )
            )  # fmt: skip

        socket = await self._open(plugin_id, route, worker, self.links.open_socket, head)
        self.sockets.add(socket)
        try:
            await socket.serve(scope, receive, send, self.timeout)
        except BaseException:
            socket.abandon()
            raise
        finally:
            self.sockets.discard(socket)
            self.links.close_stream(socket)

    async def _wait_for_worker(self, plugin_id: str) -> tuple[PluginRoute, WorkerLink]:
        """A plugin with no ready worker: wait for one while one may come (a restart), within the limits."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(self.worker_wait, self.timeout)
        while True:
            route = self.table.plugins.get(plugin_id)
            if route is None:
                raise NotFoundError(f"No plugin with id '{plugin_id}'")
            worker = route.pick()
            if worker is not None:
                return route, worker
            left = deadline - loop.time()
            if route.state == "failed" or left <= 0 or not self.table.accepting:
                raise ServiceUnavailableError(
                    f"Plugin '{plugin_id}' has no ready worker ({route.reason or route.state})"
                )
            await self.table.table_change(left)

    async def _worker_with_room(
        self, plugin_id: str, route: PluginRoute, worker: WorkerLink
    ) -> tuple[PluginRoute, WorkerLink]:
        """``worker`` if it holds fewer than ``maxInFlight`` streams; else wait in the plugin's bounded queue."""
        limits = self.limits(plugin_id)
        if not limits.max_in_flight or worker.inflight < limits.max_in_flight:
            return route, worker
        queue = self.table.queue(plugin_id)
        if len(queue) >= limits.queue_size:
            raise ServiceUnavailableError(
                f"Plugin '{plugin_id}' is at capacity ({limits.max_in_flight} in flight per worker, "
                f"{len(queue)} waiting); try again shortly",
                retry_after=1,
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(self.worker_wait, self.timeout)
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise ServiceUnavailableError(
                    f"Plugin '{plugin_id}' had no room for the request within {min(self.worker_wait, self.timeout):g}s",
                    retry_after=1,
                )
            await self.table.room(plugin_id, left)
            route, worker = await self._wait_for_worker(plugin_id)
            if worker.inflight < limits.max_in_flight:
                return route, worker

    async def _open(
        self, plugin_id: str, route: PluginRoute, worker: WorkerLink, open_on: Callable[[WorkerLink, Any], S], head: Any
    ) -> S:
        """Send the head to ``worker``; one that is gone (dead before the table says so) is skipped for another."""
        for _ in range(3):
            try:
                return open_on(worker, head)
            except WorkerGone:
                route.drop(worker)
                route, worker = await self._wait_for_worker(plugin_id)
        raise ServiceUnavailableError(f"Plugin '{plugin_id}' has no reachable worker")

    def close_sockets(self) -> None:
        """This gateway stops: every open WebSocket closes with 1001 (going away)."""
        for socket in list(self.sockets):
            socket.fail(GatewayStopping("the server is shutting down"))


def _has_dot_segment(path: str) -> bool:
    return any(part in (".", "..") for part in path.split("/"))


def _content_length(headers: Any) -> int | None:
    """The declared body size; ``Content-Length`` beside ``Transfer-Encoding`` is ambiguous framing (a
    request-smuggling vector behind some proxies): refused."""
    length = None
    chunked = False
    for name, value in headers:
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                raise InputError("Invalid Content-Length header") from None
        elif name == b"transfer-encoding":
            chunked = True
    if length is not None and chunked:
        raise InputError("A request may not carry both Content-Length and Transfer-Encoding")
    return length

"""``/api/<pluginId>/<rest>``: find the plugin, check credentials, open a stream to a worker.

The order is the security model: a path with ``.``/``..`` segments is refused,
the plugin must have a ready worker, the caller's credentials are checked
against the plugin's auth policies, the body size against the limit — all
before any byte reaches plugin code. Once the credentials are known, the admission check the
edge put in the scope (``kernel.admission``: the rate limit) decides whether the request goes on,
and the scope records the plugin and the principal (``kernel.plugin``, ``kernel.principal``) for
the access log. The answer itself is the stream's job
(``kernel.gateway.stream``). A WebSocket handshake passes the same checks
(no body) and becomes a ``GatewaySocket`` (``kernel.gateway.websockets``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.types import Receive, Scope, Send

from kernel.errors import (
    AuthenticationError,
    InputError,
    NotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
    RequestHeaderFieldsTooLargeError,
    ServiceUnavailableError,
)
from kernel.gateway.auth import Authenticator
from kernel.gateway.stream import ClientGone, WorkerGone, WorkerLink
from kernel.gateway.websockets import GatewaySocket, GatewayStopping
from kernel.gateway.workers import PluginRoute, WorkerPool
from kernel.protocol import Principal, RequestHead, encode
from kernel.settings import WorkerLimits

S = TypeVar("S")
#: what the dispatcher records in the scope, and the edge's check it runs (``kernel.gateway.middleware``)
PLUGIN_KEY = "kernel.plugin"
PRINCIPAL_KEY = "kernel.principal"
ADMISSION_KEY = "kernel.admission"


class ApiDispatcher:
    """The ASGI app serving everything under the plugin mount."""

    def __init__(
        self,
        pool: WorkerPool,
        auth: Authenticator,
        *,
        mount: str,
        timeout: float,
        max_body: int,
        worker_wait: float = 5.0,
        limits: Callable[[str], WorkerLimits] = lambda plugin_id: WorkerLimits(),
        lowest_in_flight: int = WorkerLimits().max_in_flight,
        max_headers: int = 100,
    ) -> None:
        self.max_headers = max_headers
        self.pool = pool
        self.worker_wait = worker_wait
        self.limits = limits
        #: below this many streams on a worker no plugin's limit can apply (the smallest limit of all)
        self._max_in_flight = lowest_in_flight or 2**62
        self.auth = auth
        self.prefix = mount.rstrip("/") + "/"
        self.timeout = timeout
        self.max_body = max_body
        self.inflight = 0
        #: open WebSockets, closed with 1001 when this gateway stops
        self.sockets: set[GatewaySocket] = set()

    def _route(self, path: str) -> tuple[str, str, PluginRoute]:
        """The plugin id, the path within the plugin and its route; refused before any credential check."""
        plugin_id, _sep, rest = path[len(self.prefix) :].partition("/")
        rest = "/" + rest
        if "/." in rest and _has_dot_segment(rest):
            # "/open/../private" would pass the policy of "/open" and be resolved by the plugin
            raise InputError("Request paths must not contain '.' or '..' segments")
        pool = self.pool
        if not pool.accepting:
            raise ServiceUnavailableError(
                "The server is shutting down" if pool.table_seen else "The server is starting"
            )
        route = pool.plugins.get(plugin_id)
        if route is None:
            raise NotFoundError(f"No plugin with id '{plugin_id}'")
        return plugin_id, rest, route

    async def _principal(self, scope: Scope, plugin_id: str, route: PluginRoute, rest: str, headers: Any) -> Principal:
        admission = scope.get(ADMISSION_KEY)
        try:
            principal = self.auth.authenticate(plugin_id, route.policies, rest, headers)
            if type(principal) is not Principal:  # not verified before: the verifiers may fetch keys
                principal = await principal  # type: ignore[misc]
        except (AuthenticationError, NotAllowedError):
            if admission is not None:
                await admission(scope, plugin_id, None)  # refused credentials count for the address
            raise
        scope[PRINCIPAL_KEY] = principal
        if admission is not None:
            await admission(scope, plugin_id, principal)
        return principal

    async def _admit(self, scope: Scope, path: str) -> tuple[str, PluginRoute, WorkerLink, Principal]:
        """A request's or a handshake's way in: its plugin, a worker with room, then its credentials."""
        plugin_id, rest, route = self._route(path)
        scope[PLUGIN_KEY] = plugin_id
        worker = route.pick()
        if worker is None:  # before auth: a plugin never started has no known policies
            route, worker = await self._wait_for_worker(plugin_id)
        if worker.inflight >= self._max_in_flight:  # the common case skips the per-plugin lookup
            route, worker = await self._worker_with_room(plugin_id, route, worker)
        principal = await self._principal(scope, plugin_id, route, rest, scope["headers"])
        return plugin_id, route, worker, principal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if len(scope["headers"]) > self.max_headers:
            raise RequestHeaderFieldsTooLargeError(
                f"{len(scope['headers'])} header fields are over the limit of {self.max_headers}"
            )
        if scope["type"] == "websocket":
            await self.websocket(scope, receive, send)
            return
        path: str = scope["path"]
        plugin_id, route, worker, principal = await self._admit(scope, path)
        pool = self.pool
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
                    self.prefix + plugin_id,
                    scope["http_version"],
                    raw_path=scope.get("raw_path") or b"",
                )
            )

        stream = await self._open(plugin_id, route, worker, pool.open, head)
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
            pool.close_stream(stream)
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
                    principal, root_path=self.prefix + plugin_id, http_version=scope.get("http_version", "1.1"),
                    websocket=True, raw_path=scope.get("raw_path") or b"",
                )
            )  # fmt: skip

        socket = await self._open(plugin_id, route, worker, self.pool.open_socket, head)
        self.sockets.add(socket)
        try:
            await socket.serve(scope, receive, send, self.timeout)
        except BaseException:
            socket.abandon()
            raise
        finally:
            self.sockets.discard(socket)
            self.pool.close_stream(socket)

    async def _wait_for_worker(self, plugin_id: str) -> tuple[PluginRoute, WorkerLink]:
        """A plugin with no ready worker: wait for one while one may come (a restart), within the limits."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(self.worker_wait, self.timeout)
        while True:
            route = self.pool.plugins.get(plugin_id)
            if route is None:
                raise NotFoundError(f"No plugin with id '{plugin_id}'")
            worker = route.pick()
            if worker is not None:
                return route, worker
            left = deadline - loop.time()
            if route.state == "failed" or left <= 0 or not self.pool.accepting:
                raise ServiceUnavailableError(
                    f"Plugin '{plugin_id}' has no ready worker ({route.reason or route.state})"
                )
            await self.pool.table_change(left)

    async def _worker_with_room(
        self, plugin_id: str, route: PluginRoute, worker: WorkerLink
    ) -> tuple[PluginRoute, WorkerLink]:
        """``worker`` if it holds fewer than ``maxInFlight`` streams; else wait in the plugin's bounded queue."""
        limits = self.limits(plugin_id)
        if not limits.max_in_flight or worker.inflight < limits.max_in_flight:
            return route, worker
        queue = self.pool.queue(plugin_id)
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
            await self.pool.room(plugin_id, left)
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

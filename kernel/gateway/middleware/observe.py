"""What the operator sees of every request, in one layer: its id, its access-log line, its metrics.

Three features share one pass over the request because each needs the same things (the final
status, the body size, the time to the end of the answer) and every extra ``send`` wrapper costs
the hot path: the request id (``kernel.gateway.requestid``), the access log
(``kernel.gateway.accesslog``) and the request metrics (``kernel.metrics.http``), each
switched on its own (``backend.requestId``, ``backend.accessLog``, ``backend.metrics``). Answers
with status 500 and above are also noted for the dashboard (``kernel.gateway.recent``).

WebSockets get the same: the id on the handshake's answer, one access-log line when the socket
ends (status 101 once accepted), and their time open in the metrics.
"""

from __future__ import annotations

from time import perf_counter

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kernel import framework_errors, scope_keys
from kernel.gateway import accesslog, recent, requestid
from kernel.gateway.root import HEALTH
from kernel.logs import REQUEST_ID
from kernel.metrics.http import RequestMetrics

_STARTS = ("http.response.start", "websocket.http.response.start", "websocket.accept")
_BODIES = ("http.response.body", "websocket.http.response.body")
_CLIENT_CLOSED = accesslog.CLIENT_CLOSED


class ObserveMiddleware:
    def __init__(
        self, app: ASGIApp, *, request_ids: bool = True, access_log: bool = True, metrics: RequestMetrics | None = None
    ) -> None:
        self.app = app
        self.request_ids = request_ids
        self.access_log = access_log
        self.metrics = metrics
        if access_log:
            accesslog.prepare()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        start = perf_counter()
        raw = b""
        token = None
        if self.request_ids:
            rid = requestid.assign(scope)
            raw = rid.encode()
            token = REQUEST_ID.set(rid)
        status = 0
        size = 0
        received = 0
        metrics = self.metrics

        async def observed_send(message: Message) -> None:
            nonlocal status, size
            kind = message["type"]
            if kind in _BODIES:
                size += len(message.get("body", b""))
            elif kind in _STARTS:
                status = message.get("status", 101)
                if raw:
                    own = message.get("headers") or []
                    for name, _ in own:  # ASGI header names are lowercase
                        if name == requestid.HEADER:
                            break
                    else:
                        message = {**message, "headers": [*own, (requestid.HEADER, raw)]}
            await send(message)

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            return message

        try:
            await self.app(scope, counted_receive if metrics is not None else receive, observed_send)
        except Exception as exc:
            status = status or framework_errors.describe(exc)[1]
            raise
        finally:
            status = status or _CLIENT_CLOSED
            seconds = perf_counter() - start
            if self.access_log:
                accesslog.write(scope, status, size, seconds)
            plugin_id = scope.get(scope_keys.PLUGIN)
            if metrics is not None and plugin_id is not None:
                metrics.observe(plugin_id, status, seconds, received, size)
            if status >= 500 and (plugin_id is not None or not scope["path"].startswith(HEALTH)):  # not probes
                recent.note(
                    scope.get("method", "WEBSOCKET"),
                    scope["path"],
                    status,
                    plugin_id or "-",
                    scope.get(scope_keys.REQUEST_ID, "-"),
                )
            if token is not None:
                REQUEST_ID.reset(token)

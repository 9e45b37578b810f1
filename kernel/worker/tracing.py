"""The plugin's handler inside a span: the child of the gateway's (from the forwarded ``traceparent``).

The worker wraps its plugin's ASGI app in ``HandlerSpanMiddleware`` when ``backend.tracing.enabled``
(``kernel.worker.__main__``). The span is a SERVER span named after the route the plugin's router
matched (``GET /api/catalog/entities/{id}``: the mount, then the route's path template; the mount
alone when no route matched), with ``http.request.method``, ``url.path``, ``http.route``,
``http.response.status_code``, ``kernel.plugin.id`` and ``kernel.request.id``. An exception of
the handler is recorded on it (an error status when it maps to a 5xx), then goes on to the
dispatcher, which answers it in the error shape. Everything the handler calls runs in this span's
context: an aiohttp call from it (``pluginClient``, the proxy) is its child and sends its trace on.
WebSockets pass untraced.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kernel import errors
from kernel.logs import REQUEST_ID
from kernel.tracing.headers import context_of, field_names


class HandlerSpanMiddleware:
    def __init__(self, app: ASGIApp, *, plugin_id: str, tracer: Tracer | None = None) -> None:
        self.app = app
        self.plugin_id = plugin_id
        self.tracer = tracer or trace.get_tracer("kernel.worker")
        self.propagator = propagate.get_global_textmap()
        self.fields = field_names(self.propagator)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        parent = context_of(scope["headers"], self.propagator, self.fields)
        method: str = scope["method"]
        mount: str = scope.get("root_path", "")
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "url.path": scope["path"],
            "kernel.plugin.id": self.plugin_id,
        }
        request_id = REQUEST_ID.get()
        if request_id:
            attributes["kernel.request.id"] = request_id
        span = self.tracer.start_span(f"{method} {mount}", context=parent, kind=SpanKind.SERVER, attributes=attributes)
        status = 0

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        token = otel_context.attach(trace.set_span_in_context(span, parent))
        try:
            await self.app(scope, receive, send_status)
        except Exception as exc:
            span.record_exception(exc)
            status = status or _status_of(exc)
            raise
        finally:
            otel_context.detach(token)
            if span.is_recording():
                route = _route_of(scope, mount)
                span.update_name(f"{method} {route}")
                ended: dict[str, Any] = {"http.route": route}
                if status:
                    ended["http.response.status_code"] = status
                if status >= 500 or not status:
                    ended["error.type"] = str(status) if status else "no answer"
                    span.set_status(Status(StatusCode.ERROR))
                span.set_attributes(ended)
            span.end()


def _route_of(scope: Scope, mount: str) -> str:
    """The path template the router matched, under the plugin's mount; the mount alone if none did."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        return mount
    if isinstance(route, Mount):  # an app mounted as a whole: its prefix (root_path now includes it)
        return str(scope.get("root_path", mount))
    return str(scope.get("root_path", mount)) + path


def _status_of(exc: BaseException) -> int:
    code = getattr(exc, "status_code", None)
    return code if isinstance(code, int) else errors.describe(exc)[1]

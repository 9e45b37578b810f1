"""A SERVER span per request under the plugin mount; the caller's ``traceparent`` continued, ours sent to the worker.

``kernel.tracing`` installs it through ``kernel_gateway_middleware`` when ``backend.tracing.enabled``
(so it sits inside the edge: the request id is known, errors are answers by then). The span is
named ``<METHOD> <plugin path>`` (``<mount>/<pluginId>``, or its ``getPath``; just ``<METHOD>`` when no plugin answers to the path) and
carries ``http.request.method``, ``url.path``, ``url.scheme``, ``http.route`` (the plugin's path),
``network.protocol.version``, ``client.address``, ``http.response.status_code``,
``kernel.plugin.id``, ``kernel.principal.type`` and ``kernel.request.id``; its status is an error
for a 5xx answer or a failure without one. The request goes on with this span's ``traceparent``
(and ``tracestate``, ``baggage``) in place of the caller's, so the worker's span is its child.
Requests outside the mount (health, metrics; with a ``getPath``, those under ``/.kernel``) and
WebSockets pass untraced.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kernel import errors, plugin_paths
from kernel.scope_keys import PLUGIN, PRINCIPAL, REQUEST_ID
from kernel.tracing.headers import context_of, field_names, with_context

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})


class TracingMiddleware:
    def __init__(self, app: ASGIApp, *, mount: str = "/api", tracer: Tracer | None = None) -> None:
        self.app = app
        self.prefix = mount.rstrip("/")
        self.tracer = tracer or trace.get_tracer("kernel.gateway")
        self.propagator = propagate.get_global_textmap()
        self.fields = field_names(self.propagator)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._traced(scope["path"]):
            await self.app(scope, receive, send)
            return
        parent = context_of(scope["headers"], self.propagator, self.fields)
        method: str = scope["method"]
        span = self.tracer.start_span(
            method if method in _METHODS else "HTTP",
            context=parent,
            kind=SpanKind.SERVER,
            attributes=_request_attributes(scope, method),
        )
        context = trace.set_span_in_context(span, parent)
        scope["headers"] = with_context(scope["headers"], context, self.propagator, self.fields)
        status = 0

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        token = otel_context.attach(context)
        failure: BaseException | None = None
        try:
            await self.app(scope, receive, send_status)
        except Exception as exc:
            failure = exc
            span.record_exception(exc)
            raise
        finally:
            otel_context.detach(token)
            if span.is_recording():
                self._finish(span, scope, method, status, failure)
            span.end()

    def _traced(self, path: str) -> bool:
        """Under the mount; with a ``getPath`` (``kernel.plugin_paths``), anything but the kernel's own endpoints."""
        if plugin_paths.chosen() is None:
            return path.startswith(self.prefix + "/")
        return not path.startswith("/.kernel/")

    def _finish(self, span: Any, scope: Scope, method: str, status: int, failure: BaseException | None) -> None:
        attributes: dict[str, Any] = {}
        plugin_id = scope.get(PLUGIN)
        if plugin_id:
            route = plugin_paths.path_of(plugin_id, self.prefix)
            span.update_name(f"{method if method in _METHODS else 'HTTP'} {route}")
            attributes["http.route"] = route
            attributes["kernel.plugin.id"] = plugin_id
        principal = scope.get(PRINCIPAL)
        if principal is not None:
            attributes["kernel.principal.type"] = principal.type
        request_id = scope.get(REQUEST_ID)
        if request_id:
            attributes["kernel.request.id"] = request_id
        if status:
            attributes["http.response.status_code"] = status
        if status >= 500 or (failure is not None and not status):
            attributes["error.type"] = str(status) if status else type(failure).__qualname__
            span.set_status(Status(StatusCode.ERROR, None if failure is None else errors.describe(failure)[0]))
        span.set_attributes(attributes)


def _request_attributes(scope: Scope, method: str) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "http.request.method": method if method in _METHODS else "_OTHER",
        "url.path": scope["path"],
        "url.scheme": scope.get("scheme", "http"),
        "network.protocol.version": scope.get("http_version", "1.1"),
    }
    if method not in _METHODS:
        attributes["http.request.method_original"] = method
    client = scope.get("client")
    if client:
        attributes["client.address"] = client[0]
    return attributes

"""The gateway's span and the worker's, in one process: the real dispatcher and worker dispatch, spans in memory.

``start_test_backend`` runs the gateway's ``ApiDispatcher`` and the worker's ``Dispatcher`` in the
test's process (messages passed in memory); the edge's ``TracingMiddleware`` goes around its app and
the worker's ``HandlerSpanMiddleware`` around the plugin's, as ``kernel serve`` installs them, both
with a tracer whose spans land in an ``InMemorySpanExporter``. Across real processes:
``tests/test_tracing.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode, format_span_id, format_trace_id
from starlette.requests import Request
from starlette.responses import JSONResponse

from kernel.api import HttpRouter, NotFoundError, core_services, create_plugin
from kernel.gateway.middleware.tracing import TracingMiddleware
from kernel.testing import start_test_backend
from kernel.testing.fakes import MockRootConfig
from kernel.tracing import kernel_gateway_middleware
from kernel.worker.tracing import HandlerSpanMiddleware

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"

shop = create_plugin("shop")


@shop.init(router=core_services.http_router)
def init(router: HttpRouter) -> None:
    async def item(request: Request) -> JSONResponse:
        headers = {k.decode(): v.decode() for k, v in request.scope["headers"]}
        return JSONResponse({"item": request.path_params["item_id"], "headers": headers})

    async def boom(request: Request) -> JSONResponse:
        raise RuntimeError("the handler broke")

    async def missing(request: Request) -> JSONResponse:
        raise NotFoundError("no such item")

    router.add_route("/items/{item_id}", item)
    router.add_route("/boom", boom)
    router.add_route("/missing", missing)
    router.add_auth_policy("/", allow="unauthenticated")


class Traced:
    def __init__(self, client: httpx.AsyncClient, exporter: InMemorySpanExporter) -> None:
        self.client = client
        self.exporter = exporter

    def spans(self) -> tuple[ReadableSpan, ReadableSpan]:
        """The gateway's span and the worker's of the one request sent since the last call."""
        spans = self.exporter.get_finished_spans()
        self.exporter.clear()
        gateway = [s for s in spans if s.instrumentation_scope and s.instrumentation_scope.name == "kernel.gateway"]
        worker = [s for s in spans if s.instrumentation_scope and s.instrumentation_scope.name == "kernel.worker"]
        assert len(gateway) == 1 and len(worker) == 1, [s.name for s in spans]
        return gateway[0], worker[0]


@pytest.fixture
async def traced() -> AsyncIterator[Traced]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with start_test_backend([shop]) as backend:
        dispatcher = backend.plugins["shop"][1]  # type: ignore[attr-defined]
        dispatcher.app = HandlerSpanMiddleware(
            dispatcher.app, plugin_id="shop", tracer=provider.get_tracer("kernel.worker")
        )
        app = TracingMiddleware(backend.app, mount="/api", tracer=provider.get_tracer("kernel.gateway"))  # type: ignore[attr-defined]
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Traced(client, exporter)
    provider.shutdown()


def _hex(span: ReadableSpan) -> tuple[str, str]:
    assert span.context is not None
    return format_trace_id(span.context.trace_id), format_span_id(span.context.span_id)


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


async def test_a_request_is_a_gateway_span_with_the_handlers_span_as_its_child(traced: Traced) -> None:
    resp = await traced.client.get("/api/shop/items/42")
    assert resp.status_code == 200
    gateway, worker = traced.spans()
    assert gateway.kind == SpanKind.SERVER and gateway.name == "GET /api/shop"
    assert gateway.parent is None  # no traceparent came: a new trace
    attributes = _attrs(gateway)
    assert attributes.pop("kernel.request.id") == resp.headers["x-request-id"]  # the edge's request id
    assert attributes == {
        "http.request.method": "GET",
        "url.path": "/api/shop/items/42",
        "url.scheme": "http",
        "network.protocol.version": "1.1",
        "client.address": "127.0.0.1",
        "http.route": "/api/shop",
        "kernel.plugin.id": "shop",
        "kernel.principal.type": "none",
        "http.response.status_code": 200,
    }
    assert worker.name == "GET /api/shop/items/{item_id}"
    assert worker.parent is not None and worker.parent.span_id == gateway.context.span_id  # type: ignore[union-attr]
    assert worker.parent.is_remote  # it came in the request's headers
    assert _hex(worker)[0] == _hex(gateway)[0]
    assert _attrs(worker)["http.route"] == "/api/shop/items/{item_id}"
    assert _attrs(worker)["http.response.status_code"] == 200
    # what the plugin got: the gateway span's context, as W3C trace context
    version, trace_id, span_id, flags = resp.json()["headers"]["traceparent"].split("-")
    assert (version, trace_id, span_id) == ("00", *_hex(gateway)) and int(flags, 16) & 1  # sampled


async def test_an_incoming_traceparent_is_continued_and_replaced_for_the_worker(traced: Traced) -> None:
    given = f"00-{TRACE_ID}-{PARENT_ID}-01"
    resp = await traced.client.get("/api/shop/items/7", headers={"traceparent": given, "tracestate": "vendor=abc"})
    gateway, worker = traced.spans()
    assert _hex(gateway)[0] == _hex(worker)[0] == TRACE_ID
    assert gateway.parent is not None and format_span_id(gateway.parent.span_id) == PARENT_ID
    sent = resp.json()["headers"]
    assert sent["traceparent"] == f"00-{TRACE_ID}-{_hex(gateway)[1]}-01"  # the caller's replaced, not added
    assert sent["tracestate"] == "vendor=abc"  # passed on with it


async def test_a_trace_the_caller_did_not_sample_records_nothing_but_goes_on(traced: Traced) -> None:
    resp = await traced.client.get("/api/shop/items/1", headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-00"})
    assert traced.exporter.get_finished_spans() == ()
    sent = resp.json()["headers"]["traceparent"]
    assert sent.startswith(f"00-{TRACE_ID}-") and sent.endswith("-00")


async def test_a_failing_handler_is_recorded_on_both_spans(traced: Traced) -> None:
    resp = await traced.client.get("/api/shop/boom")
    assert resp.status_code == 500
    gateway, worker = traced.spans()
    assert worker.status.status_code == StatusCode.ERROR
    (event,) = worker.events
    assert event.name == "exception" and (event.attributes or {})["exception.type"] == "RuntimeError"
    assert _attrs(worker)["http.route"] == "/api/shop/boom"
    assert gateway.status.status_code == StatusCode.ERROR
    assert _attrs(gateway)["http.response.status_code"] == 500 and _attrs(gateway)["error.type"] == "500"


async def test_a_4xx_is_recorded_but_is_not_a_server_error(traced: Traced) -> None:
    resp = await traced.client.get("/api/shop/missing")
    assert resp.status_code == 404
    gateway, worker = traced.spans()
    assert [e.name for e in worker.events] == ["exception"]
    assert worker.status.status_code == StatusCode.UNSET and gateway.status.status_code == StatusCode.UNSET
    assert _attrs(worker)["http.response.status_code"] == 404


async def test_no_route_names_the_mount_and_no_plugin_names_only_the_method(traced: Traced) -> None:
    await traced.client.get("/api/shop/nowhere")
    gateway, worker = traced.spans()
    assert (gateway.name, worker.name) == ("GET /api/shop", "GET /api/shop")
    assert _attrs(worker)["http.response.status_code"] == 404
    resp = await traced.client.get("/api/nope/x")
    assert resp.status_code == 404
    (span,) = traced.exporter.get_finished_spans()  # the gateway's alone: no worker was reached
    assert span.name == "GET" and "http.route" not in _attrs(span)
    assert _attrs(span)["http.response.status_code"] == 404


async def test_outside_the_mount_nothing_is_traced(traced: Traced) -> None:
    resp = await traced.client.get("/.kernel/health/v1/liveness")
    assert resp.status_code == 200
    assert traced.exporter.get_finished_spans() == ()


def test_the_hook_installs_the_middleware_only_when_tracing_is_on() -> None:
    assert kernel_gateway_middleware(config=MockRootConfig({})) == []
    on = MockRootConfig({"backend": {"tracing": {"enabled": True, "exporter": "none"}, "gateway": {"mount": "/x"}}})
    (factory,) = kernel_gateway_middleware(config=on)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        pass

    middleware = factory(app)
    assert isinstance(middleware, TracingMiddleware) and middleware.prefix == "/x"

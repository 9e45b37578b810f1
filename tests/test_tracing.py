"""Traces across real processes: ``kernel serve`` with ``backend.tracing`` on, every process's spans in one file.

The ``file`` exporter appends each span as a JSON line to one file all processes share, so the test
reads what the gateway, the caller's and the callee's workers and the proxy's worker recorded, and a
real upstream on 127.0.0.1 shows what the proxy sent it. One trace id runs from the client's
``traceparent`` through the gateway, the caller's handler, its call to the callee (through the
gateway again) and the callee's handler. With tracing off no process starts a tracer provider (the
file is never opened) and no ``traceparent`` is added anywhere.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from kernel.settings import OtlpSettings, TracingSettings
from kernel.testing import KernelProcess, make_package, wait_for
from kernel.tracing.provider import processor_for
from tests import plugins
from tests.conftest import base_config

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
SERVICE = "kernel-under-test"


class Upstream:
    """An HTTP upstream on 127.0.0.1 that keeps the headers (and a POST's body) of every request, by path."""

    def __init__(self) -> None:
        self.seen: dict[str, dict[str, str]] = {}
        self.bodies: dict[str, bytes] = {}
        seen, bodies = self.seen, self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                bodies[self.path] = self.rfile.read(int(self.headers.get("content-length") or 0))
                self.do_GET()

            def do_GET(self) -> None:
                seen[self.path] = {k.lower(): v for k, v in self.headers.items()}
                body = b'{"ok": true}'
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    up = Upstream()
    yield up
    up.stop()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("site")
    make_package(root, "kernel-test-echo", {"test_echo": plugins.ECHO}, {"echo": "test_echo:plugin"})
    make_package(root, "kernel-test-caller", {"test_caller": plugins.CALLER}, {"caller": "test_caller:plugin"})
    make_package(root, "kernel-test-callee", {"test_callee": plugins.CALLEE}, {"callee": "test_callee:plugin"})
    return root


def _config(folder: Path, upstream: Upstream, *, enabled: bool) -> dict[str, Any]:
    config = base_config()
    backend: dict[str, Any] = config["backend"]  # type: ignore[assignment]
    backend["tracing"] = {
        "enabled": enabled,
        "serviceName": SERVICE,
        "exporter": "file",
        "file": str(folder / "spans.jsonl"),
    }
    backend["database"] = {"connection": {"directory": str(folder / "db")}}
    config["proxy"] = {
        "endpoints": {"/up": {"target": upstream.url, "credentials": "dangerously-allow-unauthenticated"}}
    }
    return config


class Traced:
    def __init__(self, kernel: KernelProcess, spans: Path) -> None:
        self.kernel = kernel
        self.file = spans

    def spans(self) -> list[dict[str, Any]]:
        if not self.file.exists():
            return []
        return [json.loads(line) for line in self.file.read_text().splitlines() if line.strip()]

    def trace(self, trace_id: str, count: int) -> list[dict[str, Any]]:
        """The spans of ``trace_id`` once there are ``count`` of them (every process has ended its span)."""

        def found() -> list[dict[str, Any]]:
            mine = [s for s in self.spans() if s["context"]["trace_id"] == "0x" + trace_id]
            return mine if len(mine) >= count else []

        return wait_for(found, 15, lambda: f"spans of {trace_id}: {[s['name'] for s in self.spans()]}")


@pytest.fixture(scope="module")
def traced(site: Path, upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traced]:
    folder = tmp_path_factory.mktemp("traced")
    kernel = KernelProcess(_config(folder, upstream, enabled=True), paths=[site]).start(timeout=30)
    assert (folder / "spans.jsonl").exists()  # opened by every process at start (what the test with tracing off checks)
    yield Traced(kernel, folder / "spans.jsonl")
    kernel.stop()


def _one(spans: list[dict[str, Any]], **where: Any) -> dict[str, Any]:
    """The one span whose kind, plugin (resource), role (resource) and route (attribute) are as given."""

    def matches(s: dict[str, Any]) -> bool:
        res, attrs = s["resource"]["attributes"], s["attributes"]
        checks = {
            "kind": s["kind"],
            "role": res.get("kernel.process.role"),
            "worker_of": res.get("kernel.plugin.id"),
            "plugin": attrs.get("kernel.plugin.id"),
        }
        return all(checks[k] == v for k, v in where.items())

    found = [s for s in spans if matches(s)]
    assert len(found) == 1, (where, [(s["name"], s["kind"]) for s in spans])
    return found[0]


def _id(span: dict[str, Any]) -> str:
    return str(span["context"]["span_id"])


def test_with_tracing_off_nothing_is_recorded_and_no_traceparent_is_added(
    site: Path, upstream: Upstream, tmp_path: Path
) -> None:
    kernel = KernelProcess(_config(tmp_path, upstream, enabled=False), paths=[site])
    with kernel, httpx.Client(base_url=kernel.url, timeout=20) as client:
        echoed = client.get("/api/echo/echo/x").json()["headers"]
        assert "traceparent" not in dict(echoed)
        given = f"00-{TRACE_ID}-{PARENT_ID}-01"  # a caller's trace passes untouched, as any header
        echoed = client.get("/api/echo/echo/x", headers={"traceparent": given}).json()["headers"]
        assert dict(echoed)["traceparent"] == given
        assert client.get("/api/proxy/up/untraced").status_code == 200
        assert "traceparent" not in upstream.seen["/untraced"]
        called = client.get("/api/caller/call", params={"target": "callee", "path": "/whoami"}).json()
        assert called["status"] == 200
    # every process started (the kernel was ready) and none opened the exporter's file
    assert not (tmp_path / "spans.jsonl").exists()


def test_one_trace_from_the_callers_traceparent_through_a_plugin_to_plugin_call(traced: Traced) -> None:
    rid = "trace-test-" + os.urandom(4).hex()
    resp = httpx.get(
        traced.kernel.url + "/api/caller/call",
        params={"target": "callee", "path": "/whoami"},
        headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01", "x-request-id": rid},
        timeout=20,
    )
    assert resp.json() == {"status": 200, "body": {"type": "service", "subject": "plugin:caller", "actor": ""}}
    spans = traced.trace(TRACE_ID, 5)
    server, gateway = "SpanKind.SERVER", "gateway"
    edge = _one(spans, kind=server, role=gateway, plugin="caller")
    handler = _one(spans, kind=server, role="worker", worker_of="caller")
    call = _one(spans, kind="SpanKind.CLIENT", worker_of="caller")
    callee_edge = _one(spans, kind=server, role=gateway, plugin="callee")
    callee_handler = _one(spans, kind=server, role="worker", worker_of="callee")
    assert len(spans) == 5
    # each the child of the one before, the first of the caller's span
    assert edge["parent_id"] == "0x" + PARENT_ID
    assert handler["parent_id"] == _id(edge)
    assert call["parent_id"] == _id(handler)
    assert callee_edge["parent_id"] == _id(call)
    assert callee_handler["parent_id"] == _id(callee_edge)
    assert (edge["name"], handler["name"]) == ("GET /api/caller", "GET /api/caller/call")
    assert (callee_edge["name"], callee_handler["name"]) == ("GET /api/callee", "GET /api/callee/whoami")
    assert call["attributes"]["http.request.method"] == "GET"
    assert call["attributes"]["url.full"].endswith("/api/callee/whoami")
    assert edge["attributes"]["http.route"] == "/api/caller"
    assert edge["attributes"]["http.response.status_code"] == 200
    assert edge["attributes"]["kernel.request.id"] == handler["attributes"]["kernel.request.id"] == rid
    # every process names the service, its role and (a worker) its plugin; each is its own process
    for span in spans:
        assert span["resource"]["attributes"]["service.name"] == SERVICE
    pids = {s["resource"]["attributes"]["process.pid"] for s in (edge, handler, callee_handler)}
    assert len(pids) == 3


def test_the_proxy_sends_the_trace_to_its_upstream(traced: Traced, upstream: Upstream) -> None:
    resp = httpx.get(traced.kernel.url + "/api/proxy/up/traced", timeout=20)
    assert resp.status_code == 200
    rid = resp.headers["x-request-id"]
    sent = upstream.seen["/traced"]["traceparent"]
    version, trace_id, parent_id, flags = sent.split("-")
    assert version == "00" and int(flags, 16) & 1
    spans = traced.trace(trace_id, 3)  # a new trace: the client sent none
    edge = _one(spans, kind="SpanKind.SERVER", role="gateway", plugin="proxy")
    handler = _one(spans, kind="SpanKind.SERVER", role="worker", worker_of="proxy")
    call = _one(spans, kind="SpanKind.CLIENT", worker_of="proxy")
    assert edge["parent_id"] is None and edge["attributes"]["kernel.request.id"] == rid
    assert handler["parent_id"] == _id(edge) and call["parent_id"] == _id(handler)
    assert _id(call) == "0x" + parent_id  # the upstream's parent is the proxy's client span
    assert call["attributes"]["url.full"] == upstream.url + "/traced"


def test_a_request_without_a_plugin_behind_it_is_traced_at_the_edge_alone(traced: Traced) -> None:
    trace_id = os.urandom(16).hex()
    resp = httpx.get(traced.kernel.url + "/api/nope/x", headers={"traceparent": f"00-{trace_id}-{PARENT_ID}-01"})
    assert resp.status_code == 404
    (span,) = traced.trace(trace_id, 1)
    assert span["name"] == "GET" and span["attributes"]["http.response.status_code"] == 404


def test_the_otlp_exporter_sends_spans_to_the_collector_over_http(upstream: Upstream) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    otlp = OtlpSettings(endpoint=upstream.url + "/v1/traces", headers={"x-api-key": "k1"})
    processor = processor_for(TracingSettings(enabled=True, exporter="otlp", otlp=otlp))
    assert processor is not None
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}))
    provider.add_span_processor(processor)
    provider.get_tracer("test").start_span("GET /api/shop").end()
    provider.shutdown()  # flushes the batch
    assert upstream.seen["/v1/traces"]["x-api-key"] == "k1"
    sent = ExportTraceServiceRequest.FromString(upstream.bodies["/v1/traces"])
    (resource_spans,) = sent.resource_spans
    names = [span.name for scope in resource_spans.scope_spans for span in scope.spans]
    assert names == ["GET /api/shop"]

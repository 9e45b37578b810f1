"""The shipped plugins' HTTP APIs fuzzed with schemathesis, from the OpenAPI documents their workers serve.

One real ``kernel serve`` with every installed plugin (auth, frobs-aggregator, hello, insights,
proxy) and its upstreams: a real HTTP server on 127.0.0.1 that always answers well, so any 5xx is
the kernel's or a plugin's own. The index (``/.kernel/openapi/v1``) names the documents; each is
loaded from its URL, and every operation gets ``EXAMPLES`` valid cases and ``NEGATIVE_EXAMPLES``
invalid ones (schemathesis generates them with hypothesis), sent with a guest user's token. Each
answer must not be a server error (``not_a_server_error``), must conform to the document (status,
content type, body schema), and an error must be in the kernel's error shape. The requests sent and
the failures found are printed (``pytest -s``). A plugin with planted faults shows the checks catch them.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests  # schemathesis's transport

from kernel.api import merge_config
from kernel.testing import KernelProcess, make_package
from tests import plugins

schemathesis = pytest.importorskip("schemathesis")  # the test extra
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

TOKEN = "fuzz-token-for-schemathesis"
#: generated cases per operation: valid ones (as the document describes them), then invalid ones
EXAMPLES = 25
NEGATIVE_EXAMPLES = 12
SHIPPED = ("auth", "frobs-aggregator", "hello", "insights", "proxy")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


class Upstream:
    """Every upstream of the shipped plugins in one server, each answering 200 with what its plugin expects."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.path.startswith("/v1/services/"):  # insights
                    body: Any = {"id": self.path.rsplit("/", 1)[1], "metrics": {"deploysLastWeek": 3}}
                elif self.path == "/list":  # frobs
                    body = [{"status": "active"}, {"status": "retired"}, {"name": "no status"}]
                elif self.path == "/flerp-batch":  # flerps
                    body = [{"kind": "big"}, {"kind": "small"}]
                else:  # the proxy's endpoint
                    body = {"method": self.command, "path": self.path}
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            # every method the proxy forwards (its OpenAPI document lists them all)
            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_TRACE = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Report:
    """What fuzzing one document did: requests sent, and each failure (operation, mode, why)."""

    sent: int = 0
    failures: list[str] = field(default_factory=list)


def _error_shape(response: Any, case: Any) -> None:
    """A 4xx or 5xx answer is the kernel's error shape, for this request (a HEAD answer has no body, by HTTP)."""
    if response.status_code < 400:
        return
    if case.method.upper() == "HEAD":
        assert response.content == b"", f"a body in an answer to HEAD: {response.content[:200]!r}"
        kind = response.headers.get("content-type") or [""]  # schemathesis: each header's values, a list
        assert (kind[0] if isinstance(kind, list) else kind).startswith("application/json"), response.headers
        return
    try:
        body = json.loads(response.content)
    except ValueError:
        raise AssertionError(f"an error that is not JSON: {response.content[:200]!r}") from None
    assert isinstance(body, dict) and set(body) == {"error", "request", "response"}, body
    assert isinstance(body["error"]["name"], str) and isinstance(body["error"]["message"], str), body
    assert body["response"] == {"statusCode": response.status_code}, body
    assert body["request"]["method"] == case.method.upper(), body


def _run(operation: Any, mode: Any, count: int, server: str, session: requests.Session, report: Report) -> None:
    """``count`` generated requests to one operation, each answer checked; failures go to ``report``."""
    label = f"{operation.label} ({mode.value})"

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=count,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        report.sent += 1
        try:
            response = case.call(base_url=server, session=session, timeout=15)
            case.validate_response(response, checks=CHECKS)
            _error_shape(response, case)
        except (Exception, BaseExceptionGroup) as exc:  # every kind of failure is a finding (checks: a group)
            report.failures.append(f"{label}: {type(exc).__name__}: {exc}"[:1500])

    run()


def fuzz(document_url: str, headers: Mapping[str, str], examples: int, negative: int) -> tuple[str, Report]:
    """Every operation of the document at ``document_url`` with generated requests; its ``servers`` URL and a report."""
    schema = schemathesis.openapi.from_url(document_url, timeout=10)
    server: str = schema.raw_schema["servers"][0]["url"]
    report = Report()
    with requests.Session() as session:  # one kept-alive connection, as a real client has
        session.headers.update(headers)
        for result in schema.get_all_operations():
            operation = result.ok()
            parts = (operation.path_parameters, operation.query, operation.headers, operation.body)
            _run(operation, schemathesis.GenerationMode.POSITIVE, examples, server, session, report)
            if negative and any(list(part) for part in parts):  # something to make invalid
                _run(operation, schemathesis.GenerationMode.NEGATIVE, negative, server, session, report)
    return server, report


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelProcess]:
    upstream = Upstream()
    data = tmp_path_factory.mktemp("fuzz-data")
    config = merge_config(
        {
            "backend": {
                "gateway": {"requestTimeout": 10},
                "database": {"client": "sqlite", "connection": {"directory": str(data)}},
                "workers": {"heartbeatInterval": 0.2, "heartbeatTimeout": 5, "shutdownGrace": 2, "killTimeout": 2},
                "auth": {"externalAccess": [{"type": "static", "options": {"token": TOKEN, "subject": "fuzz"}}]},
            }
        },
        {
            "insights": {"externalApiUrl": upstream.url, "timeoutSeconds": 5},
            "frobsAggregator": {"frobsUrl": upstream.url, "flerpsUrl": upstream.url},
            "proxy": {"endpoints": {"/up": {"target": f"{upstream.url}/echo"}}},
        },
    )
    k = KernelProcess(config, env={"KERNEL_ENV": "development"}).start(timeout=60)  # the guest provider works
    try:
        yield k
    finally:
        k.stop()
        upstream.close()


def test_the_shipped_plugins_answer_fuzzed_requests_without_a_server_error(kernel: KernelProcess) -> None:
    started = time.monotonic()
    with httpx.Client(base_url=kernel.url, timeout=20) as client:
        index = client.get("/.kernel/openapi/v1", headers={"authorization": f"Bearer {TOKEN}"}).json()
        guest = client.post("/api/auth/guest/refresh").json()["backstageIdentity"]["token"]
    documents = {entry["id"]: entry["url"] for entry in index["plugins"]}
    assert set(documents) >= set(SHIPPED), documents
    reports: dict[str, Report] = {}
    for plugin_id in SHIPPED:
        server, reports[plugin_id] = fuzz(
            documents[plugin_id], {"authorization": f"Bearer {guest}"}, EXAMPLES, NEGATIVE_EXAMPLES
        )
        assert server == f"{kernel.url}/api/{plugin_id}"
    sent = {plugin_id: report.sent for plugin_id, report in reports.items()}
    failures = [f"{plugin_id} {failure}" for plugin_id, r in reports.items() for failure in r.failures]
    print(f"\nschemathesis: {sum(sent.values())} requests in {time.monotonic() - started:.1f}s {sent}; ", end="")
    print(f"{len(failures)} failures")
    assert not failures, "\n\n".join(failures[:10])


def test_the_fuzzing_finds_planted_faults(tmp_path: Path) -> None:
    make_package(
        tmp_path, "kernel-test-buggy", {"test_buggy_api": plugins.BUGGY_API}, {"buggy": "test_buggy_api:plugin"}
    )
    config = {
        "backend": {"auth": {"externalAccess": [{"type": "static", "options": {"token": TOKEN, "subject": "f"}}]}}
    }
    with KernelProcess(config, paths=[tmp_path]) as kernel:
        _, report = fuzz(f"{kernel.url}/api/buggy/openapi.json", {"authorization": f"Bearer {TOKEN}"}, 20, 0)
    found = "\n".join(report.failures)
    assert "GET /items/{index} (positive): " in found and "Server error" in found  # the IndexError's 500
    assert "GET /count (positive): " in found and "Response violates schema" in found
    assert "GET /shape (positive): AssertionError: {'error'" in found  # statusCode 500 in a 400

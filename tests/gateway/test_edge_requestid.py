"""``X-Request-Id`` from the edge to the worker's log lines and back, and the access log's one line per request."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from kernel.gateway.app import build_app
from kernel.gateway.middleware.observe import ObserveMiddleware
from kernel.logs import valid_request_id
from kernel.settings import AccessLogSettings, EdgeSettings, RequestIdSettings
from kernel.testing import KernelProcess, wait_for
from tests.conftest import TOKEN
from tests.gateway.edge_support import edge_config, edge_site, json_lines


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelProcess]:
    config = edge_config(logging={"format": "json"})
    k = KernelProcess(config, paths=[edge_site(tmp_path_factory.mktemp("site"))]).start()
    yield k
    k.stop()


@pytest.fixture
def client(kernel: KernelProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=kernel.url, timeout=20) as c:
        yield c


def _lines(kernel: KernelProcess, request_id: str) -> list[dict[str, Any]]:
    return [line for line in json_lines(kernel) if line.get("request_id") == request_id]


def _wait_lines(kernel: KernelProcess, request_id: str, count: int) -> list[dict[str, Any]]:
    return wait_for(
        lambda: len(_lines(kernel, request_id)) >= count and _lines(kernel, request_id),
        10,
        lambda: f"lines of {request_id}: {_lines(kernel, request_id)}",
    )


def test_a_given_id_reaches_the_workers_log_line_and_comes_back(kernel: KernelProcess, client: httpx.Client) -> None:
    rid = "req-" + os.urandom(8).hex()
    resp = client.get("/api/edge/log", params={"marker": "m1"}, headers={"X-Request-Id": rid})
    assert resp.status_code == 200 and resp.headers["x-request-id"] == rid
    lines = _wait_lines(kernel, rid, 2)
    worker = next(line for line in lines if line["message"] == "edge handled the request")
    assert worker["marker"] == "m1" and worker["logger"] == "kernel.plugin.edge"
    access = next(line for line in lines if line["logger"] == "kernel.access")
    assert access["pid"] != worker["pid"]  # the gateway's line and the worker's, one id
    assert access["message"] == "GET /api/edge/log"  # no query string
    assert (access["status"], access["plugin_id"], access["principal"]) == (200, "edge", "none")
    assert access["bytes"] == len(resp.content) and access["duration_ms"] >= 0


def test_an_id_is_made_when_missing_or_invalid(kernel: KernelProcess, client: httpx.Client) -> None:
    made = client.get("/api/echo/echo/x").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    for bad in ("has space", "x" * 201, "semi;colon", ""):
        resp = client.get("/api/echo/echo/x", headers={"X-Request-Id": bad})
        rid = resp.headers["x-request-id"]
        assert rid != bad and re.fullmatch(r"[0-9a-f]{32}", rid)
        # the worker got the new id, in place of the bad one
        sent = [v for k, v in resp.json()["headers"] if k == "x-request-id"]
        assert sent == [rid]


def test_the_access_log_has_every_answer(kernel: KernelProcess, client: httpx.Client) -> None:
    cases = [
        ("/api/echo/private/whoami", {}, 401, "echo", "-"),  # refused before a principal is known
        ("/api/echo/private/whoami", {"Authorization": f"Bearer {TOKEN}"}, 200, "echo", "service"),
        ("/api/nope/x", {}, 404, "-", "-"),
        ("/.kernel/health/v1/liveness", {}, 200, "-", "-"),
    ]
    for path, headers, status, plugin, principal in cases:
        rid = os.urandom(8).hex()
        assert client.get(path, headers={**headers, "X-Request-Id": rid}).status_code == status
        (line,) = [line for line in _wait_lines(kernel, rid, 1) if line["logger"] == "kernel.access"]
        assert (line["status"], line["plugin_id"], line["principal"]) == (status, plugin, principal), path


def test_valid_request_ids() -> None:
    assert valid_request_id(b"abc-123_x.y:z+/=@") == "abc-123_x.y:z+/=@"
    for bad in (b"", b"a b", b"x" * 201, "é".encode(), b"a\r\nb"):
        assert valid_request_id(bad) is None


def test_access_log_and_request_ids_can_be_turned_off() -> None:
    def layers(edge: EdgeSettings) -> set[type]:
        app: Any = build_app(SimpleNamespace(prefix="/api/"), [], dev=False, edge=edge)  # type: ignore[arg-type]
        found = set()
        while hasattr(app, "app"):
            app = app.app
            found.add(type(app))
        return found

    assert {ObserveMiddleware} <= layers(EdgeSettings())
    off = EdgeSettings(access_log=AccessLogSettings(enabled=False), request_id=RequestIdSettings(enabled=False))
    assert not {ObserveMiddleware} & layers(off)

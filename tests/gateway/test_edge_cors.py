"""CORS as ``backend.cors`` configures it: preflights answered at the gateway, origins by glob, refusals."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from kernel.gateway.middleware.cors import CorsMiddleware, glob_regex
from kernel.settings import CorsSettings
from kernel.testing import KernelProcess
from tests.conftest import TOKEN, assert_error_shape
from tests.gateway.edge_support import edge_config, edge_site

APP = "https://app.example.com"


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelProcess]:
    config = edge_config(
        cors={
            "origin": ["https://*.example.com", "http://localhost:{3000,3001}"],
            "methods": "GET,POST",  # a string is a comma-separated list, as the reference system reads it
            "credentials": True,
            "exposedHeaders": ["X-Request-Id"],
            "maxAge": 600,
        }
    )
    k = KernelProcess(config, paths=[edge_site(tmp_path_factory.mktemp("site"))]).start()
    yield k
    k.stop()


@pytest.fixture
def client(kernel: KernelProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=kernel.url, timeout=20) as c:
        yield c


def _preflight(client: httpx.Client, path: str, origin: str, **headers: str) -> httpx.Response:
    return client.options(path, headers={"Origin": origin, "Access-Control-Request-Method": "POST", **headers})


def test_a_preflight_is_answered_at_the_gateway(client: httpx.Client) -> None:
    # a protected path: had it gone on, the gateway would have answered 401 (the worker never hears of it)
    resp = _preflight(client, "/api/edge/private/whoami", APP, **{"Access-Control-Request-Headers": "authorization"})
    assert resp.status_code == 204 and resp.content == b""
    h = resp.headers
    assert h["access-control-allow-origin"] == APP
    assert h["access-control-allow-credentials"] == "true"
    assert h["access-control-allow-methods"] == "GET,POST"
    assert h["access-control-allow-headers"] == "authorization"  # what the preflight asked for
    assert h["access-control-max-age"] == "600"
    assert h["vary"] == "Origin, Access-Control-Request-Headers"
    assert h["x-content-type-options"] == "nosniff"  # the security headers too
    # an OPTIONS route of the plugin is not reached either
    assert _preflight(client, "/api/edge/options", "http://localhost:3001").status_code == 204


def test_a_preflight_from_another_origin_is_refused(client: httpx.Client) -> None:
    for origin in ("https://evil.example.org", "https://example.com", "http://localhost:3002"):
        resp = _preflight(client, "/api/edge/small", origin)
        assert_error_shape(resp, 403, "NotAllowedError")
        assert "access-control-allow-origin" not in resp.headers


def test_requests_from_allowed_origins_get_cors_headers(client: httpx.Client) -> None:
    resp = client.get("/api/edge/small", headers={"Origin": "HTTPS://API.example.com"})  # case-insensitive
    assert resp.headers["access-control-allow-origin"] == "HTTPS://API.example.com"
    assert resp.headers["access-control-allow-credentials"] == "true"
    assert resp.headers["access-control-expose-headers"] == "X-Request-Id"
    assert resp.headers["vary"] == "Origin"
    # errors of the gateway carry them too, so the page can read the 401
    denied = client.get("/api/edge/private/whoami", headers={"Origin": APP})
    assert_error_shape(denied, 401, "AuthenticationError")
    assert denied.headers["access-control-allow-origin"] == APP
    ok = client.get("/api/edge/private/whoami", headers={"Origin": APP, "Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == APP


def test_other_origins_and_same_origin_requests_get_none(client: httpx.Client) -> None:
    for headers in ({"Origin": "https://evil.example.org"}, {}):
        resp = client.get("/api/edge/small", headers=headers)
        assert resp.status_code == 200
        assert not [k for k in resp.headers if k.startswith("access-control-")]
        assert "vary" not in resp.headers


def test_a_plugins_own_cors_headers_win(client: httpx.Client) -> None:
    resp = client.get("/api/edge/own-cors", headers={"Origin": APP})
    assert resp.headers.get_list("access-control-allow-origin") == ["https://mine.example"]
    assert "access-control-allow-credentials" not in resp.headers


@pytest.mark.parametrize(
    ("pattern", "origin", "matches"),
    [
        ("https://*.example.com", "https://app.example.com", True),
        ("https://*.example.com", "https://example.com", False),
        ("https://*.example.com", "https://a.b.example.com", True),  # minimatch: * takes dots too
        ("https://*.example.com", "https://x.y/z.example.com", False),  # * stays in a segment
        ("http://localhost:{3000,3001}", "http://localhost:3001", True),
        ("http://localhost:300[0-2]", "http://localhost:3002", True),
        ("http://localhost:300[!0-2]", "http://localhost:3002", False),
        ("http://host?.test", "http://host1.test", True),
        ("https://a.example.com", "https://aXexample.com", False),  # dots are literal
    ],
)
def test_origin_patterns_as_minimatch(pattern: str, origin: str, matches: bool) -> None:
    assert bool(re.fullmatch(glob_regex(pattern), origin, re.IGNORECASE)) is matches


async def test_no_origin_key_allows_any_origin_as_a_star() -> None:
    sent: list[dict[str, object]] = []

    async def app(scope: object, receive: object, send: object) -> None:
        raise AssertionError("a preflight must not reach the app")

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "OPTIONS",
        "path": "/api/x",
        "headers": [(b"origin", b"https://anywhere.test"), (b"access-control-request-method", b"GET")],
    }
    await CorsMiddleware(app, settings=CorsSettings())(scope, None, send)  # type: ignore[arg-type]
    headers = dict(sent[0]["headers"])  # type: ignore[call-overload]
    assert sent[0]["status"] == 204 and headers[b"access-control-allow-origin"] == b"*"
    assert b"vary" not in headers  # the answer does not depend on the origin

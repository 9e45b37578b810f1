"""Security headers on every answer (helmet's, Backstage's CSP), their overrides, HSTS on TLS only, health headers."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from kernel.gateway.middleware.headers import csp_value, security_headers
from kernel.settings import EdgeSettings
from kernel.testing import KernelProcess
from tests.conftest import assert_error_shape
from tests.gateway.edge_support import edge_config, edge_site

BACKSTAGE_CSP = (
    "default-src 'self';base-uri 'self';font-src 'self' https: data:;frame-ancestors 'self';"
    "img-src 'self' data:;object-src 'none';script-src 'self' 'unsafe-eval';script-src-attr 'none';"
    "style-src 'self' https: 'unsafe-inline';upgrade-insecure-requests"
)
HELMET = {
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "origin-agent-cluster": "?1",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "x-dns-prefetch-control": "off",
    "x-download-options": "noopen",
    "x-frame-options": "SAMEORIGIN",
    "x-permitted-cross-domain-policies": "none",
    "x-xss-protection": "0",
}


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelProcess]:
    config = edge_config(
        trustProxy=True,
        csp={"connectSrc": ["'self'", "https://api.example.com"], "upgrade-insecure-requests": False},
        securityHeaders={"Referrer-Policy": "same-origin", "X-Download-Options": False},
        health={"headers": {"X-Envoy-Upstream-Healthchecked-Cluster": "kernel-test"}},
    )
    k = KernelProcess(config, paths=[edge_site(tmp_path_factory.mktemp("site"))]).start()
    yield k
    k.stop()


@pytest.fixture
def client(kernel: KernelProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=kernel.url, timeout=20) as c:
        yield c


def test_the_defaults_are_helmets_with_backstages_csp() -> None:
    headers, hsts = security_headers(EdgeSettings())
    assert dict((k.decode(), v.decode()) for k, v in headers) == {**HELMET, "content-security-policy": BACKSTAGE_CSP}
    assert hsts == (b"strict-transport-security", b"max-age=31536000; includeSubDomains")
    assert csp_value({"scriptSrc": ["'self'"], "object-src": False}).count("script-src 'self';") == 1
    assert "object-src" not in csp_value({"object-src": False})


def test_every_answer_carries_the_configured_headers(client: httpx.Client) -> None:
    expected = {**HELMET, "referrer-policy": "same-origin"}
    del expected["x-download-options"]  # removed by backend.securityHeaders
    answers = [
        client.get("/api/edge/small"),  # a plugin's answer
        client.get("/api/edge/private/whoami"),  # the gateway's 401
        client.get("/api/nope/x"),  # the gateway's 404
        client.get("/.kernel/health/v1/readiness"),  # the root
    ]
    assert_error_shape(answers[1], 401, "AuthenticationError")
    for resp in answers:
        assert {k: resp.headers.get(k) for k in HELMET} == {k: expected.get(k) for k in HELMET}
        csp = resp.headers["content-security-policy"]
        assert "connect-src 'self' https://api.example.com" in csp  # backend.csp adds (kebab-cased) ...
        assert "upgrade-insecure-requests" not in csp  # ... and removes
        assert "default-src 'self'" in csp and "script-src 'self' 'unsafe-eval'" in csp
        assert "strict-transport-security" not in resp.headers  # plain HTTP


def test_hsts_only_over_tls(client: httpx.Client) -> None:
    # backend.trustProxy: a TLS-terminating proxy says the client came over https
    secure = client.get("/api/edge/small", headers={"X-Forwarded-Proto": "https"})
    assert secure.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
    assert "strict-transport-security" not in client.get("/api/edge/small").headers


def test_a_plugins_own_header_wins(client: httpx.Client) -> None:
    resp = client.get("/api/edge/own-headers")
    assert resp.headers["content-security-policy"] == "default-src 'none'"
    assert resp.headers["x-frame-options"] == "DENY"
    assert resp.headers.get_list("x-frame-options") == ["DENY"]
    assert resp.headers["x-content-type-options"] == "nosniff"  # the others are still added


def test_health_answers_carry_the_configured_headers(client: httpx.Client) -> None:
    for path in ("/.kernel/health/v1/readiness", "/.kernel/health/v1/liveness"):
        assert client.get(path).headers["x-envoy-upstream-healthchecked-cluster"] == "kernel-test"
    assert "x-envoy-upstream-healthchecked-cluster" not in client.get("/api/edge/small").headers

"""The proxy plugin in a real kernel, against real upstreams on 127.0.0.1.

One kernel serves every endpoint these tests need (module fixture ``env``), with config reload on,
``skipInvalidProxies`` (one endpoint is bad) and a package with a module of the proxy adding
endpoints through the ``proxy.endpoints`` extension point. One more kernel shows a bad endpoint
stopping start-up.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from proxy_support import (
    AUTH,
    RESET_SENT,
    Flaky,
    Upstream,
    assert_error,
    header,
    kernel_config,
    make_ca,
    refused_url,
    start_kernel,
)

from kernel.testing import KernelProcess, make_package, wait_for

MODULE_PACKAGE = '''
"""Test package: a module of the proxy adding endpoints in code (the proxy.endpoints extension point)."""
from kernel.api import create_module
from kernel_proxy.extension import proxy_endpoints_extension_point

module = create_module(plugin_id="proxy", module_id="test-endpoints")


@module.init(proxy=proxy_endpoints_extension_point)
async def init(proxy):
    proxy.add_proxy_endpoints({{
        "/from-module": {{"target": "{url}/added", "credentials": "dangerously-allow-unauthenticated"}},
        "/echo": "http://127.0.0.1:9/the-config-wins",
    }})
'''


@dataclass
class Env:
    kernel: KernelProcess
    config: dict[str, Any]
    up: Upstream
    tls: Upstream
    dropper: Flaky
    flaky: Flaky

    def url(self, path: str) -> str:
        return f"{self.kernel.url}/api/proxy{path}"

    def reload(self, endpoints: dict[str, Any]) -> None:
        config = json.loads(json.dumps(self.config))
        config["proxy"]["endpoints"] = endpoints
        self.kernel.config_path.write_text(yaml.safe_dump(config))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("proxy")
    ca_path, server_tls = make_ca(root / "tls")
    up, tls = Upstream().start(), Upstream(tls=server_tls).start()
    dropper, flaky = Flaky(drops=1_000_000), Flaky()
    endpoints: dict[str, Any] = {
        "/echo": {"target": f"{up.url}/base", "headers": {"X-Custom-Source": "kernel"}},
        "forward": {"target": up.url, "credentials": "forward"},
        "/open": {"target": up.url, "credentials": "dangerously-allow-unauthenticated"},
        "/readonly": {"target": up.url, "allowedMethods": ["GET"]},
        "/allowed": {"target": up.url, "allowedHeaders": ["Set-Cookie", "X-Internal", "Cookie", "X-Request-Id"]},
        "/rewrite": {"target": f"{up.url}/v2", "pathRewrite": {"^/api/proxy/rewrite/(?<kind>\\w+)/": "/$<kind>-x/"}},
        "/keephost": {"target": up.url, "changeOrigin": False},
        "/refused": {"target": refused_url(), "retries": {"count": 0}},
        "/hang": {"target": up.url, "timeout": {"readSeconds": 0.5}},
        "/failover": {"target": [dropper.url, up.url], "coolDownSeconds": 300},
        "/failover-post": {"target": [refused_url(), up.url]},
        "/flaky": {"target": flaky.url, "retries": {"count": 2, "backoffSeconds": 0.01}},
        "/limited": {"target": up.url, "maxConcurrentRequests": 1},
        "/tls": {"target": tls.url, "ca": str(ca_path)},
        "/tls-insecure": {"target": tls.url, "secure": False},
        "/tls-default": {"target": tls.url, "retries": {"count": 0}},
        "/broken": {"target": "not a url"},
    }
    config = kernel_config(
        root,
        {"endpoints": endpoints, "skipInvalidProxies": True},
        config={"reload": {"enabled": True, "pollSeconds": 0.1}},
    )
    site = make_package(
        root / "site",
        "kernel-proxy-test-endpoints",
        {"proxy_test_endpoints": MODULE_PACKAGE.format(url=up.url)},
        {"proxy-test-endpoints": "proxy_test_endpoints:module"},
    )
    kernel = start_kernel(config, paths=[site])
    yield Env(kernel, config, up, tls, dropper, flaky)
    kernel.stop()
    for server in (up, tls, dropper, flaky):
        server.stop()


@pytest.fixture(scope="module")
def client(env: Env) -> Iterator[httpx.Client]:
    with httpx.Client(timeout=20) as c:
        yield c


# ---------------------------------------------------------------------------- the request, intact


def test_path_query_and_body_reach_the_target_intact(env: Env, client: httpx.Client) -> None:
    body = os.urandom(1 << 20)
    resp = client.post(env.url("/echo/a/b%20c/d?x=1&y=%2F&y=2&empty="), content=body, headers=AUTH)
    assert resp.status_code == 201, resp.text
    hit = resp.json()
    assert hit["method"] == "POST"
    assert hit["path"] == "/base/a/b%20c/d?x=1&y=%2F&y=2&empty="
    assert hit["length"] == len(body)
    assert hit["sha256"] == hashlib.sha256(body).hexdigest()


def test_the_route_alone_reaches_the_target_path(env: Env, client: httpx.Client) -> None:
    assert client.get(env.url("/echo"), headers=AUTH).json()["path"] == "/base/"
    assert client.get(env.url("/echo/"), headers=AUTH).json()["path"] == "/base/"
    assert client.get(env.url("/echo/list"), headers=AUTH).json()["path"] == "/base/list"
    assert_error(client.get(env.url("/echoes/list"), headers=AUTH), 404, "NotFoundError")  # a segment prefix only


def test_path_rewrite_applies_to_the_full_path_as_in_the_reference(env: Env, client: httpx.Client) -> None:
    resp = client.get(env.url("/rewrite/frobs/list?q=1"), headers=AUTH)
    assert resp.json()["path"] == "/v2/frobs-x/list?q=1"


def test_methods_pass_and_allowed_methods_are_enforced(env: Env, client: httpx.Client) -> None:
    for method in ("GET", "PUT", "DELETE", "PATCH", "OPTIONS"):
        resp = client.request(method, env.url("/echo/m"), headers=AUTH)
        assert resp.status_code == 200, resp.text
        assert resp.json()["method"] == method
    assert client.head(env.url("/echo/m"), headers=AUTH).status_code == 200
    assert client.get(env.url("/readonly/x"), headers=AUTH).status_code == 200
    before = len(env.up.hits)
    for method in ("POST", "DELETE", "HEAD"):
        resp = client.request(method, env.url("/readonly/x"), headers=AUTH)
        assert resp.status_code == 405
        if method != "HEAD":
            assert "GET" in assert_error(resp, 405, "MethodNotAllowedError")
    assert len(env.up.hits) == before


def test_the_openapi_document_lists_exactly_the_methods_that_pass(env: Env, client: httpx.Client) -> None:
    """As the reference's proxy, an endpoint without ``allowedMethods`` passes every method: the document says so."""
    every = ("GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE")
    doc = client.get(env.url("/openapi.json"), headers=AUTH).json()
    for path in ("/echo", "/echo/{path}"):
        assert sorted(doc["paths"][path]) == sorted(m.lower() for m in every)
    for method in every:
        resp = client.request(method, env.url("/echo/m"), headers=AUTH)
        assert resp.status_code == (201 if method == "POST" else 200), (method, resp.text)
        if method != "HEAD":
            assert resp.json()["method"] == method
    # an endpoint limiting its methods: the document lists those, and the others are refused
    assert sorted(doc["paths"]["/readonly/{path}"]) == ["get"]
    for method in every:
        resp = client.request(method, env.url("/readonly/x"), headers=AUTH)
        assert resp.status_code == (200 if method == "GET" else 405), (method, resp.text)


# ---------------------------------------------------------------------------- headers


def test_only_safe_and_configured_headers_go_upstream(env: Env, client: httpx.Client) -> None:
    caller = {
        **AUTH,
        "cookie": "backstage-auth=limited; other=1",
        "accept": "application/json",
        "accept-language": "fr",
        "user-agent": "proxy-test",
        "cache-control": "no-cache",
        "x-secret": "nope",
        "x-forwarded-for": "6.6.6.6",
        "x-custom-source": "caller",
        "accept-encoding": "gzip",
    }
    hit = client.get(env.url("/echo/h"), headers=caller).json()
    names = {name for name, _ in hit["headers"]}
    assert header(hit, "accept") == ["application/json"]
    assert header(hit, "accept-language") == ["fr"]
    assert header(hit, "user-agent") == ["proxy-test"]
    assert header(hit, "cache-control") == ["no-cache"]
    assert header(hit, "x-custom-source") == ["kernel"]  # the configured value, not the caller's
    assert "authorization" not in names and "cookie" not in names and "x-secret" not in names
    assert "accept-encoding" not in names  # so the answer is not compressed behind the caller's back
    assert header(hit, "x-forwarded-for") == ["127.0.0.1"]  # the caller's own claim is not kept
    assert header(hit, "x-forwarded-proto") == ["http"]
    assert header(hit, "x-forwarded-host") == [f"127.0.0.1:{env.kernel.port}"]
    assert header(hit, "host") == [f"127.0.0.1:{env.up.port}"]  # changeOrigin (default): the target's


def test_change_origin_false_keeps_the_callers_host(env: Env, client: httpx.Client) -> None:
    hit = client.get(env.url("/keephost/x"), headers={**AUTH, "host": "portal.example.com"}).json()
    assert header(hit, "host") == ["portal.example.com"]


def test_forward_passes_the_callers_authorization_but_no_cookie(env: Env, client: httpx.Client) -> None:
    hit = client.get(env.url("/forward/x"), headers={**AUTH, "cookie": "a=1"}).json()
    assert header(hit, "authorization") == [AUTH["authorization"]]
    assert header(hit, "cookie") == []


def test_allowed_headers_let_named_headers_through_both_ways(env: Env) -> None:
    resp = httpx.get(env.url("/allowed/x"), headers={**AUTH, "cookie": "a=1", "x-request-id": "r1"}, timeout=20)
    hit = resp.json()
    assert header(hit, "cookie") == ["a=1"] and header(hit, "x-request-id") == ["r1"]
    assert header(hit, "authorization") == []
    assert resp.headers.get_list("set-cookie") == ["session=upstream-secret; Path=/", "other=1"]
    assert resp.headers["x-internal"] == "do-not-leak"


def test_set_cookie_and_unknown_response_headers_are_stripped(env: Env, client: httpx.Client) -> None:
    resp = client.get(env.url("/echo/r"), headers=AUTH)
    assert resp.status_code == 200
    assert "set-cookie" not in resp.headers and "x-internal" not in resp.headers
    assert "keep-alive" not in resp.headers  # hop-by-hop
    assert resp.headers["cache-control"] == "no-store"
    assert resp.headers["content-type"] == "application/json"
    assert "content-encoding" not in resp.headers


# ---------------------------------------------------------------------------- credentials


def test_require_without_credentials_is_401_before_any_upstream_call(env: Env, client: httpx.Client) -> None:
    before = len(env.up.hits)
    for route in ("/echo/x", "/forward/x", "/readonly/x"):
        assert_error(client.get(env.url(route)), 401, "AuthenticationError")
    assert_error(client.get(env.url("/echo/x"), headers={"authorization": "Bearer wrong"}), 401, "AuthenticationError")
    assert len(env.up.hits) == before


def test_an_open_endpoint_needs_no_credentials_and_forwards_none(env: Env, client: httpx.Client) -> None:
    resp = client.get(env.url("/open/x"))
    assert resp.status_code == 200, resp.text
    resp = client.get(env.url("/open/x"), headers=AUTH)
    assert header(resp.json(), "authorization") == []


# ---------------------------------------------------------------------------- upstream failures


def _upstream_errors(env: Env, endpoint: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(env.kernel.metrics_url, timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "kernel_proxy_upstream_errors_total" and sample.labels.get("endpoint") == endpoint:
                return sample.value
    return 0.0


def test_a_refused_connection_is_502(env: Env, client: httpx.Client) -> None:
    before = _upstream_errors(env, "/refused")
    message = assert_error(client.get(env.url("/refused/x"), headers=AUTH), 502, "BadGatewayError")
    assert "'/refused'" in message and "unreachable" in message
    assert "127.0.0.1" not in message  # the target is logged, not answered
    assert _upstream_errors(env, "/refused") == before + 1  # in the kernel's metrics


def test_a_hanging_upstream_is_504(env: Env, client: httpx.Client) -> None:
    env.up.hanging.clear()
    message = assert_error(client.get(env.url("/hang/hang"), headers=AUTH), 504, "GatewayTimeoutError")
    assert "0.5s" in message
    assert env.up.hanging.is_set()


def test_a_reset_mid_body_breaks_the_answer_off(env: Env, client: httpx.Client) -> None:
    received = 0
    with pytest.raises(httpx.HTTPError), client.stream("GET", env.url("/echo/reset"), headers=AUTH) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-length"] == str(1 << 20)
        for chunk in resp.iter_raw():
            received += len(chunk)
    assert received <= RESET_SENT
    wait_for(lambda: "proxy upstream broke off its answer" in env.kernel.output(), 10, env.kernel.output)
    assert client.get(env.url("/echo/after"), headers=AUTH).status_code == 200  # the worker lives on


def test_failover_to_the_second_target_and_the_first_cools_down(env: Env, client: httpx.Client) -> None:
    resp = client.get(env.url("/failover/x"), headers=AUTH)
    assert resp.status_code == 200, resp.text
    assert resp.json()["path"] == "/x"
    assert env.dropper.connections == 1
    for _ in range(3):  # skipped while it cools down (coolDownSeconds: 300)
        assert client.get(env.url("/failover/x"), headers=AUTH).status_code == 200
    assert env.dropper.connections == 1


def test_a_refused_first_target_fails_over_even_for_a_post(env: Env, client: httpx.Client) -> None:
    resp = client.post(env.url("/failover-post/x"), content=b"once", headers=AUTH)
    assert resp.status_code == 201, resp.text
    assert resp.json()["sha256"] == hashlib.sha256(b"once").hexdigest()


def test_a_get_is_retried_after_a_reset_connection_a_post_is_not(env: Env, client: httpx.Client) -> None:
    env.flaky.drops, env.flaky.connections = 2, 0
    resp = client.get(env.url("/flaky/x"), headers=AUTH)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"flaky": "answered", "connections": 3}
    env.flaky.drops, env.flaky.connections = 1, 0
    message = assert_error(client.post(env.url("/flaky/x"), content=b"x", headers=AUTH), 502, "BadGatewayError")
    assert "without answering" in message
    assert env.flaky.connections == 1


def test_max_concurrent_requests_answers_503_beyond_the_limit(env: Env, client: httpx.Client) -> None:
    env.up.hanging.clear()
    env.up.release_hang.clear()
    first: list[httpx.Response] = []
    holder = threading.Thread(target=lambda: first.append(client.get(env.url("/limited/hang"), headers=AUTH)))
    holder.start()
    try:
        assert env.up.hanging.wait(10)
        message = assert_error(client.get(env.url("/limited/x"), headers=AUTH), 503, "ServiceUnavailableError")
        assert "limit of 1" in message
    finally:
        env.up.release_hang.set()
        holder.join(15)
    assert first[0].status_code == 200
    assert client.get(env.url("/limited/x"), headers=AUTH).status_code == 200


# ---------------------------------------------------------------------------- TLS


def test_tls_with_a_ca_bundle_or_without_verification(env: Env, client: httpx.Client) -> None:
    assert client.get(env.url("/tls/x"), headers=AUTH).json()["path"] == "/x"
    assert client.get(env.url("/tls-insecure/y"), headers=AUTH).json()["path"] == "/y"
    message = assert_error(client.get(env.url("/tls-default/z"), headers=AUTH), 502, "BadGatewayError")
    assert "certificate" in message


# ---------------------------------------------------------------------------- streaming


def test_server_sent_events_arrive_one_by_one(env: Env, client: httpx.Client) -> None:
    gates = env.up.event_gates
    for gate in gates:
        gate.clear()
    with client.stream("GET", env.url("/echo/events"), headers={**AUTH, "accept": "text/event-stream"}) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "text/event-stream"
        assert "content-encoding" not in resp.headers
        buffer = b""
        chunks = resp.iter_raw()
        for i, gate in enumerate(gates):
            while b"\n\n" not in buffer:  # event i arrives while the upstream waits to send the next
                buffer += next(chunks)
            event, buffer = buffer.split(b"\n\n", 1)
            assert event == f"id: {i}\ndata: event {i}".encode()
            assert not gate.is_set()
            gate.set()  # now the upstream sends event i + 1


# ---------------------------------------------------------------------------- endpoints: modules, invalid, reload


def test_module_endpoints_are_served_and_the_config_wins_a_clash(env: Env, client: httpx.Client) -> None:
    resp = client.get(env.url("/from-module/x"))  # open, added by the module
    assert resp.status_code == 200, resp.text
    assert resp.json()["path"] == "/added/x"
    assert client.get(env.url("/echo/x"), headers=AUTH).json()["path"] == "/base/x"
    out = env.kernel.output()
    assert "added by a module overridden by the config" in out and "endpoint=/echo" in out


def test_an_invalid_endpoint_is_skipped_with_a_warning(env: Env, client: httpx.Client) -> None:
    assert_error(client.get(env.url("/broken/x"), headers=AUTH), 404, "NotFoundError")
    out = env.kernel.output()
    assert "skipped" in out and "'/broken'" in out and "not a url" in out


def test_a_reload_adds_and_removes_an_endpoint_and_its_open_policy(env: Env, client: httpx.Client) -> None:
    original = env.config["proxy"]["endpoints"]
    later = {"target": f"{env.up.url}/later", "credentials": "dangerously-allow-unauthenticated"}
    env.reload({**original, "/later": later})
    try:
        wait_for(lambda: client.get(env.url("/later/x")).status_code == 200, 15, env.kernel.output)
        assert client.get(env.url("/later/x")).json()["path"] == "/later/x"
    finally:
        env.reload(original)
    wait_for(lambda: client.get(env.url("/later/x")).status_code == 401, 15, env.kernel.output)
    assert_error(client.get(env.url("/later/x"), headers=AUTH), 404, "NotFoundError")
    assert client.get(env.url("/echo/x"), headers=AUTH).status_code == 200  # the others stay


def test_a_bad_reload_is_refused_and_the_endpoints_stay(env: Env, client: httpx.Client) -> None:
    config = json.loads(json.dumps(env.config))
    config["proxy"] = {"endpoints": {"/echo": {"target": "ftp://nope"}}}  # no skipInvalidProxies
    env.kernel.config_path.write_text(yaml.safe_dump(config))
    try:
        wait_for(lambda: "proxy config reload refused" in env.kernel.output(), 15, env.kernel.output)
        assert client.get(env.url("/echo/x"), headers=AUTH).json()["path"] == "/base/x"
    finally:
        env.kernel.config_path.write_text(yaml.safe_dump(env.config))


# ---------------------------------------------------------------------------- start-up


def test_a_bad_endpoint_stops_start_up_naming_it(tmp_path: Path) -> None:
    config = kernel_config(tmp_path, {"endpoints": {"/good": "http://127.0.0.1:9", "bad": {"target": "ftp://x"}}})
    kernel = KernelProcess(config).start(wait=False)
    try:
        assert kernel.proc is not None
        code = kernel.proc.wait(60)
    finally:
        kernel.stop()
    out = kernel.output()
    assert code == 1, out
    assert "plugin 'proxy'" in out and "proxy endpoint 'bad'" in out and "ftp://x" in out

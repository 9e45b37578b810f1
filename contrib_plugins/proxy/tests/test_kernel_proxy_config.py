"""The proxy's parts without a kernel: endpoint config, routes, path rewrites, header filters, the extension point.

And ``kernel config check`` on a ``proxy`` block, as a user runs it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml
from kernel_proxy.config import Endpoint, ProxyConfig, normalize_key, parse_endpoint
from kernel_proxy.extension import ProvidedEndpoints, ProxyEndpointsExtension, proxy_endpoints_extension_point
from kernel_proxy.forward import upstream_path
from kernel_proxy.headers import SAFE_HEADERS, downstream_headers, upstream_headers
from kernel_proxy.plugin import plugin, provided_endpoints
from kernel_proxy.rewrite import PathRewrite, join_path
from kernel_proxy.table import EndpointTable, build_endpoints
from kernel_proxy.websocket import sendable_code

from kernel.api import ConfigError, ExtensionPoint
from kernel.testing import RecordingLogger

# ---------------------------------------------------------------------------- endpoints


@pytest.mark.parametrize(
    ("key", "route"), [("frobs", "/frobs"), ("/frobs", "/frobs"), ("/frobs/", "/frobs"), ("a/b", "/a/b"), ("/", "/")]
)
def test_routes_get_a_leading_slash(key: str, route: str) -> None:
    assert normalize_key(key) == route


@pytest.mark.parametrize("key", ["", "/a/../b", "/./a", "a//b", "/a?x", "/a#b", "/a%2Fb", "/a b"])
def test_bad_routes_are_named(key: str) -> None:
    with pytest.raises(ConfigError, match="proxy endpoint"):
        normalize_key(key)


def test_a_url_string_is_an_endpoint_with_the_defaults() -> None:
    ep = parse_endpoint("frobs", "http://api.frobsco.com/v1")
    assert ep.prefix == "/frobs" and ep.targets == ("http://api.frobsco.com/v1",)
    assert ep.change_origin and ep.credentials == "require" and not ep.open and not ep.ws
    assert ep.rewrite is None and ep.allowed_methods is None and ep.headers == ()
    assert ep.request_allow == SAFE_HEADERS == ep.response_allow
    assert "authorization" not in ep.request_allow and "cookie" not in ep.request_allow
    assert (ep.connect_timeout, ep.read_timeout, ep.retries, ep.cool_down, ep.max_concurrent) == (5, 60, 1, 10, None)
    assert ep.secure and ep.ca is None


def test_an_object_endpoint_with_every_option() -> None:
    ep = parse_endpoint(
        "/my-api",
        {
            "target": ["https://a.example/v1", "https://b.example/v1"],
            "changeOrigin": False,
            "pathRewrite": {"^/api/proxy/my-api/": "/"},
            "headers": {"X-Custom-Source": "kernel", "Authorization": "Bearer t"},
            "allowedMethods": ["get", "DELETE"],
            "allowedHeaders": ["X-Request-Id", "Set-Cookie", "Connection"],
            "credentials": "forward",
            "ws": True,
            "timeout": {"connectSeconds": 1, "readSeconds": None},
            "retries": {"count": 3, "backoffSeconds": 0.5},
            "coolDownSeconds": 0,
            "maxConcurrentRequests": 7,
            "secure": False,
        },
    )
    assert ep.targets == ("https://a.example/v1", "https://b.example/v1")
    assert not ep.change_origin and ep.ws and ep.credentials == "forward"
    assert ep.allowed_methods == frozenset({"GET", "DELETE"})
    assert ep.headers == (("X-Custom-Source", "kernel"), ("Authorization", "Bearer t"))
    assert {"x-custom-source", "authorization", "x-request-id", "set-cookie"} <= ep.request_allow
    assert "connection" not in ep.request_allow  # hop-by-hop never passes
    assert ep.response_allow == SAFE_HEADERS | {"x-request-id", "set-cookie"}
    assert (ep.connect_timeout, ep.read_timeout, ep.retries, ep.backoff) == (1, None, 3, 0.5)
    assert (ep.cool_down, ep.max_concurrent, ep.secure) == (0, 7, False)


def test_forward_lets_the_callers_authorization_through() -> None:
    assert "authorization" in parse_endpoint("/f", {"target": "http://a", "credentials": "forward"}).request_allow
    assert parse_endpoint("/o", {"target": "http://a", "credentials": "dangerously-allow-unauthenticated"}).open


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("api.frobsco.com/v1", "is not an http(s) URL"),
        ("ftp://api.frobsco.com", "is not an http(s) URL"),
        ("http://", "is not an http(s) URL"),
        ("http://a.example/x?y=1", "is not an http(s) URL"),
        ("http://user:pw@a.example", "is not an http(s) URL"),
        ("http://a.example:99999", "is not an http(s) URL"),
        ({"target": []}, "lists no URL"),
        ({"target": ["http://a", "nope"]}, "'nope'"),
        ({}, "missing required field `target`"),
        ({"target": "http://a", "changeOrign": False}, "changeOrign"),
        ({"target": "http://a", "credentials": "maybe"}, "credentials"),
        ({"target": "http://a", "headers": {"Connection": "close"}}, "hop-by-hop"),
        ({"target": "http://a", "headers": {"Bad Name": "x"}}, "not a header name"),
        ({"target": "http://a", "allowedMethods": ["GE T"]}, "not an HTTP method"),
        ({"target": "http://a", "pathRewrite": {"(": "/"}}, "pathRewrite"),
        ({"target": "http://a", "timeout": 5000}, "timeout"),
        ({"target": "http://a", "timeout": {"readSeconds": 0}}, "readSeconds"),
        ({"target": "http://a", "retries": {"count": -1}}, "count"),
        ({"target": "https://a", "ca": "/no/such/ca.pem"}, "is not a readable CA bundle"),
        (42, "expected a target URL"),
    ],
)
def test_a_bad_endpoint_is_a_config_error_naming_it(value: Any, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_endpoint("/bad", value)
    assert "proxy endpoint '/bad'" in str(info.value) and says in str(info.value)


def _schema(data: Any) -> ProxyConfig:
    return msgspec.convert(data, ProxyConfig, strict=False)


def test_the_schema_checks_every_endpoint_unless_told_to_skip() -> None:
    assert _schema({}).endpoints == {}
    assert _schema({"endpoints": {"/a": "http://a"}, "skipInvalidProxies": "true"}).skip_invalid_proxies
    with pytest.raises(msgspec.ValidationError, match=r"proxy endpoint 'b'.*not an http\(s\) URL"):
        _schema({"endpoints": {"/a": "http://a", "b": "nope"}})
    with pytest.raises(msgspec.ValidationError, match="the same route"):
        _schema({"endpoints": {"/a": "http://a", "a": "http://b"}})
    with pytest.raises(msgspec.ValidationError, match="endpoint"):  # a typo is not ignored
        _schema({"endpoint": {"/a": "http://a"}})
    _schema({"endpoints": {"b": "nope"}, "skipInvalidProxies": True})  # the plugin skips it


# ---------------------------------------------------------------------------- merging config and modules


def test_the_config_wins_over_modules_and_a_later_addition_over_an_earlier_one() -> None:
    log = RecordingLogger()
    config = _schema({"endpoints": {"/shared": "http://config", "/own": "http://own"}})
    added = [{"/shared": "http://first", "/added": "http://first"}, {"added": "http://second"}]
    endpoints = build_endpoints(config, added, log)
    assert {r: e.targets for r, e in endpoints.items()} == {
        "/shared": ("http://config",),
        "/own": ("http://own",),
        "/added": ("http://second",),
    }
    assert any("overridden by the config" in line for line in log.lines)
    assert any("added twice by modules: the later one wins" in line for line in log.lines)


def test_a_bad_module_endpoint_stops_or_is_skipped() -> None:
    log = RecordingLogger()
    with pytest.raises(ConfigError, match=r"proxy endpoint '/x'.*from a module, through the proxy.endpoints"):
        build_endpoints(_schema({}), [{"/x": "nope"}], log)
    skip = _schema({"endpoints": {"/bad": "nope", "/ok": "http://ok"}, "skipInvalidProxies": True})
    assert list(build_endpoints(skip, [{"/x": "nope"}], log)) == ["/ok"]
    assert sum("skipped" in line for line in log.lines) == 2


def test_the_table_matches_the_longest_route_by_segments_and_keeps_unchanged_pools() -> None:
    table = EndpointTable(RecordingLogger())
    a, ab = parse_endpoint("/a", "http://a"), parse_endpoint("/a/b", "http://ab")
    table.replace({"/a": a, "/a/b": ab})
    assert table.match("/a/b/c") == (ab, table.match("/a/b")[1])  # type: ignore[index]
    assert table.match("/a/bc")[0] is a  # type: ignore[index]
    assert table.match("/a")[0] is a  # type: ignore[index]
    assert table.match("/ab") is None and table.match("/") is None
    pool_a = table.match("/a")[1]  # type: ignore[index]
    table.replace({"/a": parse_endpoint("/a", "http://a"), "/c": parse_endpoint("/c", "http://c")})
    assert table.match("/a")[1] is pool_a  # type: ignore[index]
    assert table.match("/a/b")[0].prefix == "/a"  # type: ignore[index]
    table.replace({"/a": parse_endpoint("/a", "http://a2")})
    assert table.match("/a")[1] is not pool_a  # type: ignore[index]
    root = EndpointTable(RecordingLogger())
    root.replace({"/": parse_endpoint("/", "http://root")})
    assert root.match("/anything/at/all") is not None


# ---------------------------------------------------------------------------- paths


def _path(ep: Endpoint, full: str, root: str = "/api/proxy") -> str:
    return upstream_path(ep, {"path": full, "root_path": root}, full[len(root) :] or "/")


def test_the_default_rewrite_cuts_the_mount_and_the_route() -> None:
    ep = parse_endpoint("/frobs", "http://api.frobsco.com/v1")
    assert join_path("/v1", _path(ep, "/api/proxy/frobs/list")) == "/v1/list"
    assert join_path("/v1", _path(ep, "/api/proxy/frobs")) == "/v1/"
    assert join_path("/v1", _path(ep, "/api/proxy/frobs/a//b/")) == "/v1/a/b/"
    assert join_path("", _path(ep, "/api/proxy/frobs/x")) == "/x"
    root = parse_endpoint("/", "http://root")
    assert _path(root, "/api/proxy/any/thing") == "/any/thing"


@pytest.mark.parametrize(
    ("base", "path", "joined"),
    [("/v1", "/list", "/v1/list"), ("/v1/", "/", "/v1/"), ("", "/x", "/x"), ("/", "/x", "/x"), ("", "", "/")],
)
def test_join_path_as_http_proxy(base: str, path: str, joined: str) -> None:
    assert join_path(base, path) == joined


def test_path_rewrite_rules_are_javascript_regexes_on_the_full_path() -> None:
    rw = PathRewrite({"^/api/proxy/x/(?<kind>\\w+)/(\\d+)": "/$<kind>/n$2$$", "^/api/proxy/y": "/y$&"})
    assert rw.apply("/api/proxy/x/frobs/42/rest") == "/frobs/n42$/rest"
    assert rw.apply("/api/proxy/y/z") == "/y/api/proxy/y/z"  # the first matching rule only
    assert rw.apply("/elsewhere") == "/elsewhere"
    assert PathRewrite({"a": "b"}) == PathRewrite({"a": "b"}) != PathRewrite({"a": "c"})
    ep = parse_endpoint("/r", {"target": "http://a/v2", "pathRewrite": {"^/api/proxy/r/old/": "/new/"}})
    assert _path(ep, "/api/proxy/r/old/x") == "/new/x"


# ---------------------------------------------------------------------------- headers


def _up(caller: list[tuple[bytes, bytes]], ep: Endpoint, **kw: Any) -> list[tuple[str, str]]:
    opts: dict[str, Any] = {"streamed": False, "client": "10.0.0.7", "scheme": "https", **kw}
    return upstream_headers(
        caller, allow=ep.request_allow, configured=ep.headers, change_origin=ep.change_origin, **opts
    )


def test_upstream_headers_filter_and_forwarded_headers() -> None:
    ep = parse_endpoint("/e", {"target": "http://a", "headers": {"X-Api-Key": "k"}, "allowedHeaders": ["X-Trace"]})
    caller = [
        (b"host", b"portal.example.com"),
        (b"authorization", b"Bearer user"),
        (b"cookie", b"a=1"),
        (b"content-length", b"5"),
        (b"connection", b"keep-alive, x-trace"),
        (b"x-trace", b"t1"),
        (b"x-api-key", b"caller"),
        (b"accept", b"*/*"),
        (b"te", b"trailers"),
    ]
    assert _up(caller, ep) == [
        ("accept", "*/*"),
        ("x-forwarded-for", "10.0.0.7"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "portal.example.com"),
        ("X-Api-Key", "k"),
    ]
    streamed = dict(_up(caller, ep, streamed=True))
    assert streamed["content-length"] == "5"
    keep = parse_endpoint("/k", {"target": "http://a", "changeOrigin": False, "allowedHeaders": ["X-Forwarded-For"]})
    out = dict(_up([(b"host", b"h.example"), (b"x-forwarded-for", b"1.2.3.4")], keep))
    assert out["host"] == "h.example" and out["x-forwarded-for"] == "1.2.3.4, 10.0.0.7"


def test_downstream_headers_keep_the_allowed_ones_and_their_repeats() -> None:
    upstream = [
        (b"Content-Type", b"text/plain"),
        (b"Set-Cookie", b"a=1"),
        (b"Set-Cookie", b"b=2"),
        (b"X-Internal", b"1"),
        (b"Transfer-Encoding", b"chunked"),
        (b"Content-Encoding", b"gzip"),
        (b"Connection", b"close, x-hop"),
        (b"X-Hop", b"1"),
    ]
    plain = parse_endpoint("/p", "http://a")
    assert downstream_headers(upstream, allow=plain.response_allow) == [
        (b"content-type", b"text/plain"),
        (b"content-encoding", b"gzip"),
    ]
    cookies = parse_endpoint("/c", {"target": "http://a", "allowedHeaders": ["set-cookie", "x-hop"]})
    assert downstream_headers(upstream, allow=cookies.response_allow) == [
        (b"content-type", b"text/plain"),
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
        (b"content-encoding", b"gzip"),
    ]


# ---------------------------------------------------------------------------- the extension point


def test_the_plugin_registers_the_proxy_endpoints_extension_point() -> None:
    assert proxy_endpoints_extension_point.id == "proxy.endpoints"
    point, implementation = plugin.extension_points["proxy.endpoints"]
    assert point is proxy_endpoints_extension_point and implementation is provided_endpoints
    assert ProxyEndpointsExtension.add_proxy_endpoints.__doc__
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert "proxy_endpoints_extension_point" in readme and 'create_module(plugin_id="proxy"' in readme


def test_what_modules_add_is_taken_once_in_order() -> None:
    extension: ProxyEndpointsExtension = ProvidedEndpoints()  # what a module sees, typed by the protocol
    extension.add_proxy_endpoints({"/a": "http://a"})
    extension.add_proxy_endpoints({"b": {"target": "http://b"}})
    assert isinstance(extension, ProvidedEndpoints)
    assert extension.take() == [{"/a": "http://a"}, {"b": {"target": "http://b"}}]
    assert extension.take() == []  # a second start of the plugin in one process starts afresh
    with pytest.raises(TypeError, match="a mapping of route to endpoint"):
        extension.add_proxy_endpoints(["/a"])  # type: ignore[arg-type]
    # a module needs only an extension point of the same id, not the proxy's package
    assert ExtensionPoint[ProxyEndpointsExtension]("proxy.endpoints").id == proxy_endpoints_extension_point.id


# ---------------------------------------------------------------------------- WebSocket close codes


@pytest.mark.parametrize(
    ("code", "sent"),
    [(1000, 1000), (4000, 4000), (1014, 1014), (3001, 3001), (None, 1000), (0, 1000), (1005, 1000), (1006, 1001)],
)
def test_close_codes_that_may_not_be_sent_are_replaced(code: int | None, sent: int) -> None:
    assert sendable_code(code) == sent
    assert sendable_code(1015) == sendable_code(999) == sendable_code(5000) == 1001


# ---------------------------------------------------------------------------- kernel config check


def _check(tmp_path: Path, config: object) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "app-config.yaml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.run(
        [sys.executable, "-m", "kernel.cli", "config", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        cwd=tmp_path,
        timeout=60,
    )


def test_config_check_names_a_bad_endpoint_unless_skipped(tmp_path: Path) -> None:
    endpoints = {"/frobs": "http://api.frobsco.com/v1", "/bad": {"target": "ftp://x"}}
    done = _check(tmp_path, {"proxy": {"endpoints": endpoints}})
    assert done.returncode == 2, done.stderr
    assert "proxy endpoint '/bad'" in done.stderr and "kernel-plugin-proxy" in done.stderr, done.stderr
    done = _check(tmp_path, {"proxy": {"endpoints": endpoints, "skipInvalidProxies": True}})
    assert done.returncode == 0, done.stderr


def test_the_commented_example_of_the_repository_config_is_valid() -> None:
    lines = (Path(__file__).parents[3] / "conf" / "app-config.yaml").read_text().splitlines()
    start = lines.index("# proxy:")
    block = [lines[start]]
    for line in lines[start + 1 :]:
        if not line.startswith("#   "):
            break
        block.append(line)
    example = yaml.safe_load("\n".join(line[2:] for line in block))
    config = _schema(example["proxy"])
    endpoints = build_endpoints(config, [], RecordingLogger())
    assert sorted(endpoints) == ["/frobs", "/my-api"]
    assert endpoints["/my-api"].allowed_methods == frozenset({"GET", "DELETE"})

"""The request path through gateway and worker: round trip, errors, limits, auth, streaming."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
from typing import Any

import httpx
import psutil
import pytest

from kernel.testing import KernelProcess, wait_for
from tests.conftest import RESTRICTED_TOKEN, TOKEN, assert_error_shape, base_config


def test_round_trip_is_exact(client: httpx.Client) -> None:
    body = bytes(range(256)) * 40 + b"\x00\xff"
    resp = client.put(
        "/api/echo/echo/a%20b/c",
        params=[("x", "1"), ("x", "2"), ("y", "é")],
        content=body,
        headers={"X-Custom": "value with spaces", "X-Bin": 'a\t!~\\"z'},
    )
    assert resp.status_code == 200, resp.text
    got = resp.json()
    assert got["method"] == "PUT"
    assert got["path"] == "/api/echo/echo/a b/c"
    assert got["raw_path"] == "/api/echo/echo/a%20b/c"  # as the client sent it

    slash = client.get("/api/echo/echo/a%2Fb").json()  # an encoded / stays one segment for the plugin
    assert (slash["path"], slash["raw_path"]) == ("/api/echo/echo/a/b", "/api/echo/echo/a%2Fb")
    assert got["query"] == "x=1&x=2&y=%C3%A9"
    assert ["x-custom", "value with spaces"] in got["headers"]
    assert ["x-bin", 'a\t!~\\"z'] in got["headers"]
    assert base64.b64decode(got["body"]) == body


def test_liveness_and_readiness(client: httpx.Client) -> None:
    assert client.get("/.kernel/health/v1/liveness").json() == {"status": "ok"}
    ready = client.get("/.kernel/health/v1/readiness")
    assert ready.status_code == 200 and ready.json() == {"status": "ok"}


def test_unknown_plugin_and_route(client: httpx.Client) -> None:
    assert_error_shape(client.get("/api/nope/x"), 404, "NotFoundError")
    # secure by default: an unknown route is still a protected path
    assert_error_shape(client.get("/api/echo/no-such-route"), 401, "AuthenticationError")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert_error_shape(client.get("/api/echo/no-such-route", headers=auth), 404, "NotFoundError")
    assert_error_shape(client.get("/elsewhere"), 404, "NotFoundError")


def test_handler_errors_keep_the_worker(client: httpx.Client) -> None:
    pid = client.get("/api/echo/pid").json()["pid"]
    body = assert_error_shape(client.get("/api/echo/boom"), 500, "RuntimeError")
    assert body["error"]["message"] == "kaboom"
    body = assert_error_shape(client.get("/api/echo/input?q=1"), 400, "InputError")
    assert body["error"]["message"] == "the frobnicator is missing"
    assert body["request"]["url"] == "/api/echo/input?q=1"
    assert client.get("/api/echo/pid").json()["pid"] == pid


def test_deadline_gives_504(client: httpx.Client) -> None:
    assert_error_shape(client.get("/api/echo/sleep", params={"s": 5}), 504, "GatewayTimeoutError")
    assert client.get("/api/echo/sleep", params={"s": 0.01}).status_code == 200


def test_method_not_allowed(client: httpx.Client) -> None:
    resp = client.post("/api/echo/pid")
    assert resp.status_code == 405
    assert resp.json()["error"]["name"] == "MethodNotAllowedError"


@pytest.mark.parametrize(
    ("path", "token", "status", "name"),
    [
        ("/api/echo/private/whoami", None, 401, "AuthenticationError"),
        ("/api/echo/private/whoami", "wrong-token-xxxx", 401, "AuthenticationError"),
        ("/api/echo/private/whoami", RESTRICTED_TOKEN, 403, "NotAllowedError"),
        ("/api/other/whoami", None, 401, "AuthenticationError"),
    ],
)
def test_protected_routes_refuse(client: httpx.Client, path: str, token: str | None, status: int, name: str) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    resp = client.get(path, headers=headers)
    assert_error_shape(resp, status, name)
    if status == 401:
        assert resp.headers["www-authenticate"] == "Bearer"


def test_protected_routes_accept_static_tokens(client: httpx.Client) -> None:
    ok = client.get("/api/echo/private/whoami", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200
    assert ok.json() == {"type": "service", "subject": "external:ci-bot"}
    restricted = client.get("/api/other/whoami", headers={"Authorization": f"Bearer {RESTRICTED_TOKEN}"})
    assert restricted.json() == {"type": "service", "subject": "external:other-only"}
    # an open path still sees who called, when credentials are given
    echoed = client.get("/api/echo/echo/x", headers={"Authorization": f"Bearer {TOKEN}"})
    assert echoed.json()["principal"] == "external:ci-bot"


def _rss(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


def _processes(kernel: KernelProcess, kind: str) -> list[psutil.Process]:
    assert kernel.proc is not None
    return [p for p in psutil.Process(kernel.proc.pid).children() if f"kernel.{kind}" in " ".join(p.cmdline())]


def test_100mb_download_and_upload_with_bounded_memory(kernel: KernelProcess, client: httpx.Client) -> None:
    gateway = _processes(kernel, "gateway")[0]
    worker_pid = client.get("/api/echo/pid").json()["pid"]
    before = {"gateway": _rss(gateway.pid), "worker": _rss(worker_pid)}
    peak = dict(before)

    def sample() -> None:
        peak["gateway"] = max(peak["gateway"], _rss(gateway.pid))
        peak["worker"] = max(peak["worker"], _rss(worker_pid))

    size, seen = 100 * 1024 * 1024, 0
    digest = hashlib.sha256()
    with client.stream("GET", "/api/echo/stream", params={"mb": 100}) as resp:
        assert resp.status_code == 200
        for i, part in enumerate(resp.iter_raw()):
            seen += len(part)
            digest.update(part)
            if i % 64 == 0:
                sample()
    assert seen == size
    assert digest.hexdigest() == hashlib.sha256(b"x" * size).hexdigest()

    def body():
        chunk = os.urandom(1024 * 1024)
        for i in range(100):
            if i % 8 == 0:
                sample()
            yield chunk
        body.digest = hashlib.sha256(chunk * 100).hexdigest()

    resp = client.post("/api/echo/upload", content=body())
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"size": size, "sha256": body.digest}
    sample()
    for proc in ("gateway", "worker"):
        growth = (peak[proc] - before[proc]) / 2**20
        assert growth < 40, f"{proc} RSS grew by {growth:.1f} MB"


def test_body_limit_gives_413(site) -> None:
    with (
        KernelProcess(base_config(maxRequestBodySize=1024), paths=[site]) as k,
        httpx.Client(base_url=k.url, timeout=10) as c,
    ):
        assert_error_shape(c.post("/api/echo/upload", content=b"x" * 2048), 413, "PayloadTooLargeError")

        def chunked():
            for _ in range(4):
                yield b"y" * 512

        assert_error_shape(c.post("/api/echo/upload", content=chunked()), 413, "PayloadTooLargeError")
        assert c.post("/api/echo/upload", content=b"z" * 1000).json()["size"] == 1000


def test_the_body_limit_takes_exactly_the_limit_and_refuses_one_byte_more(site) -> None:
    def chunks(size: int):
        yield from (b"c" * 256 for _ in range(size // 256))
        yield b"c" * (size % 256)

    with (
        KernelProcess(base_config(maxRequestBodySize=1024), paths=[site]) as k,
        httpx.Client(base_url=k.url, timeout=10) as c,
    ):
        whole = {"size": 1024, "sha256": hashlib.sha256(b"c" * 1024).hexdigest()}
        declared = c.post("/api/echo/upload", content=b"c" * 1024)
        assert declared.request.headers["content-length"] == "1024"
        assert (declared.status_code, declared.json()) == (200, whole), declared.text
        streamed = c.post("/api/echo/upload", content=chunks(1024))
        assert streamed.request.headers["transfer-encoding"] == "chunked"
        assert (streamed.status_code, streamed.json()) == (200, whole), streamed.text

        declared = c.post("/api/echo/upload", content=b"c" * 1025)
        assert declared.request.headers["content-length"] == "1025"
        assert_error_shape(declared, 413, "PayloadTooLargeError")
        streamed = c.post("/api/echo/upload", content=chunks(1025))
        assert streamed.request.headers["transfer-encoding"] == "chunked"
        assert_error_shape(streamed, 413, "PayloadTooLargeError")


def test_a_client_leaving_mid_stream_stops_the_handler(client: httpx.Client, kernel: KernelProcess) -> None:
    log_before = len(kernel.output())
    stats = client.get("/api/echo/pid").json()
    before, ended_before = stats["chunks_streamed"], stats["streams_ended"]
    with socket.create_connection(("127.0.0.1", kernel.port)) as raw:
        raw.sendall(b"GET /api/echo/stream?mb=1024 HTTP/1.1\r\nHost: test\r\n\r\n")
        got = 0
        while got < 4 * 2**20:
            got += len(raw.recv(65536))

    def handler_stopped() -> dict[str, int] | None:  # its response ended: it produces nothing more
        now: dict[str, int] = client.get("/api/echo/pid").json()
        return now if now["streams_ended"] > ended_before else None

    # the worker stops producing soon after the client is gone
    streamed = wait_for(handler_stopped, 10, "the worker kept streaming to a client that left")["chunks_streamed"]
    assert streamed - before < 1024 * 16 // 4, "most of the 1 GB was produced for nobody"
    assert "Traceback" not in kernel.output()[log_before:]  # a client leaving is not an error


def test_a_worker_dying_mid_answer_cuts_the_connection_with_one_log_line(
    client: httpx.Client, kernel: KernelProcess
) -> None:
    log_before = len(kernel.output())
    pid = client.get("/api/echo/pid").json()["pid"]
    with socket.create_connection(("127.0.0.1", kernel.port), timeout=20) as raw:
        raw.sendall(b"GET /api/echo/stream?mb=1024 HTTP/1.1\r\nHost: test\r\n\r\n")
        got = 0
        while got < 2**20:
            got += len(raw.recv(65536))
        os.kill(pid, 9)
        while data := raw.recv(65536):  # the client sees the connection cut: never a complete answer
            got += len(data)
            assert not data.endswith(b"0\r\n\r\n"), "a broken-off answer looked complete"
    assert got < 1024 * 2**20
    wait_for(lambda: "was broken off" in kernel.output()[log_before:], 10, kernel.output)
    assert "Traceback" not in kernel.output()[log_before:]  # an expected event: one warning line

    def echo_back() -> bool:  # a request that reached the dying worker may fail: wait for a good answer
        r = client.get("/api/echo/pid")
        return r.status_code == 200 and r.json()["pid"] != pid

    wait_for(echo_back, 20, "echo never came back")


@pytest.mark.parametrize("path", ["/api/echo/echo/../private/whoami", "/api/echo/echo/./x", "/api/echo/%2E%2E/pid"])
def test_dot_segments_are_refused_before_policies_apply(kernel: KernelProcess, path: str) -> None:
    # a raw request: HTTP clients would normalise the path themselves
    with socket.create_connection(("127.0.0.1", kernel.port)) as raw:
        raw.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := raw.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert json.loads(body)["error"]["name"] == "InputError"


def test_mounted_asgi_apps_and_the_fallback(client: httpx.Client) -> None:
    raw = client.get("/api/other/raw/a/b")
    assert raw.status_code == 200
    assert raw.text == "raw /api/other/raw /api/other/raw/a/b"
    fallback = client.get("/api/other/elsewhere")
    assert (fallback.status_code, fallback.text) == (418, "fallback")


def _raw_answer(kernel: KernelProcess, request: bytes) -> tuple[int, dict[str, Any]]:
    with socket.create_connection(("127.0.0.1", kernel.port), timeout=10) as raw:
        raw.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            chunk = raw.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_ambiguous_framing_is_refused(kernel: KernelProcess) -> None:
    """Content-Length beside Transfer-Encoding (a request-smuggling vector behind some proxies): 400."""
    status, body = _raw_answer(
        kernel,
        b"POST /api/echo/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    assert status == 400 and body["error"]["name"] == "InputError"
    assert "Content-Length" in body["error"]["message"] and "Transfer-Encoding" in body["error"]["message"]


def test_too_many_header_fields_get_431_in_the_error_shape(kernel: KernelProcess) -> None:
    fields = b"".join(b"X-Field-%d: v\r\n" % i for i in range(150))
    status, body = _raw_answer(kernel, b"GET /api/echo/pid HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
    assert status == 431 and body["error"]["name"] == "RequestHeaderFieldsTooLargeError"
    assert "over the limit of 100" in body["error"]["message"]


def _close_wait(port: int) -> int:
    """Sockets of the kernel's port in CLOSE-WAIT: the client closed, the gateway has not yet."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "08":
                    count += 1
    return count


def test_a_connection_the_client_closed_is_closed_at_once(kernel: KernelProcess) -> None:
    """Not after the keep-alive timeout (75 s): each one would hold its memory until then (found by the soak)."""
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", kernel.port), timeout=10) as sock:
            sock.sendall(b"GET /api/echo/pid HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    wait_for(lambda: _close_wait(kernel.port) == 0, 10, "the gateway kept client-closed connections open")


def test_a_path_cannot_forge_an_access_log_line(kernel: KernelProcess) -> None:
    with httpx.Client(base_url=kernel.url, timeout=10) as client:
        resp = client.get("/api/echo/nothing%0A12:00:00%20INFO%20forged-line%20status=200")
    assert resp.status_code == 401  # not an open route
    lines = wait_for(
        lambda: [ln for ln in kernel.output().splitlines() if "forged-line" in ln] or None, 10, "no access-log line"
    )
    assert all("%0A12:00:00 INFO forged-line" in ln for ln in lines), lines  # one line, the newline escaped

"""The hardened edge: ``backend.gateway``'s limits and the server's own refusals, through ``kernel serve`` and raw sockets.

Every refusal is read off the wire and checked to be the kernel's error shape (``Content-Type:
application/json``, ``{"error", "request", "response"}``), under every server the gateway can run (``auto``, hypercorn, uvicorn);
after each, an ordinary request still works (the gateway is unharmed). HTTP/2 (h2c by prior
knowledge, h2 over TLS) is checked to work with the limits in place.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kernel.testing import KernelProcess
from tests.gateway.edge_support import edge_config, edge_site

#: small limits, so each can be reached quickly
LIMITS = {
    "maxHeaderSize": 4096,
    "maxUrlLength": 1024,
    "headersTimeout": 1,
    "bodyIdleTimeout": 1,
    "bodyTimeout": 2.5,
    "keepAliveTimeout": 3,
    "maxConnections": 4,
    "requestTimeout": 30,  # never the reason a slow upload ends here
}
CURL = shutil.which("curl")
needs_curl = pytest.mark.skipif(CURL is None, reason="curl is not installed")


@pytest.fixture(scope="module", params=["auto", "hypercorn", "uvicorn"])
def kernel(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelProcess]:
    config = edge_config()
    config["backend"]["gateway"].update(LIMITS, server=request.param)
    site = edge_site(tmp_path_factory.mktemp("site"))
    k = KernelProcess(config, paths=[site]).start(timeout=60)  # a loaded machine starts slowly
    yield k
    k.stop()
    assert "Traceback" not in k.output(), k.output()


# ---------------------------------------------------------------------------- the wire


def _connect(kernel: KernelProcess, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", kernel.port), timeout=timeout)


def _read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One answer off the socket: status, headers (lower-case names), body (by its Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed before an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict((name.lower(), value.strip()) for name, _, value in (line.partition(":") for line in lines[1:]))
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, "the connection closed inside an answer"
        body += chunk
    return int(lines[0].split()[1]), headers, body


def _assert_shape(answer: tuple[int, dict[str, str], bytes], status: int, name: str) -> dict[str, Any]:
    got_status, headers, body = answer
    assert got_status == status, answer
    assert headers["content-type"] == "application/json", headers
    shape: dict[str, Any] = json.loads(body)
    assert set(shape) == {"error", "request", "response"}
    assert shape["error"]["name"] == name and shape["error"]["message"], shape
    assert set(shape["request"]) == {"method", "url"}
    assert shape["response"] == {"statusCode": status}
    assert "stack" not in shape["error"]
    return shape


def _closed(sock: socket.socket, within: float = 10.0) -> bool:
    """Whether the server closes ``sock`` within ``within`` seconds (anything it still sends is read)."""
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        if select.select([sock], [], [], left)[0]:
            try:
                if not sock.recv(65536):
                    return True
            except ConnectionResetError:
                return True
    return False


def _refused(kernel: KernelProcess, request: bytes, status: int, name: str) -> dict[str, Any]:
    """Send ``request`` on a new connection: answered in the error shape, then the connection is closed."""
    with _connect(kernel) as sock:
        sock.sendall(request)
        shape = _assert_shape(_read_answer(sock), status, name)
        assert _closed(sock), "the connection stayed open after a refusal"
    return shape


def _unharmed(kernel: KernelProcess) -> None:
    """An ordinary request still gets its answer."""
    with httpx.Client(base_url=kernel.url, timeout=10) as client:
        resp = client.get("/api/echo/pid")
    assert resp.status_code == 200 and resp.json()["pid"] > 0


# ---------------------------------------------------------------------------- malformed HTTP

GET = b"GET /api/echo/pid HTTP/1.1\r\nHost: x\r\n"
UPLOAD = b"POST /api/echo/upload HTTP/1.1\r\nHost: x\r\n"


@pytest.mark.parametrize(
    ("request_bytes", "method", "url"),
    [
        pytest.param(b"GARBAGE\r\n\r\n", "", "", id="request line without a target"),
        pytest.param(b"GET /api/echo/pid HTTP/1.1\r\nHost x\r\n\r\n", "GET", "/api/echo/pid", id="field without colon"),
        pytest.param(GET + b"X-Nul: a\x00b\r\n\r\n", "GET", "/api/echo/pid", id="NUL in a field value"),
        pytest.param(b"GET /\xff HTTP/1.1\r\nHost: x\r\n\r\n", "GET", "/\xff", id="non-ASCII target"),
        pytest.param(UPLOAD + b"Content-Length: abc\r\n\r\n", "POST", "/api/echo/upload", id="bad Content-Length"),
        pytest.param(
            UPLOAD + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab", "POST", "/api/echo/upload", id="two lengths"
        ),
        pytest.param(
            UPLOAD + b"Transfer-Encoding: chunked\r\n\r\nZZZ\r\n", "POST", "/api/echo/upload", id="bad chunk size"
        ),
    ],
)
def test_malformed_requests_get_400_in_the_error_shape(
    kernel: KernelProcess, request_bytes: bytes, method: str, url: str
) -> None:
    shape = _refused(kernel, request_bytes, 400, "InputError")
    assert shape["error"]["message"].startswith("Malformed HTTP request")
    if shape["request"]["method"]:  # what could be read of the request line is named
        assert (shape["request"]["method"], shape["request"]["url"]) == (method, url)
    _unharmed(kernel)


def test_an_unknown_transfer_coding_is_refused_in_the_error_shape(kernel: KernelProcess) -> None:
    with _connect(kernel) as sock:
        sock.sendall(UPLOAD + b"Transfer-Encoding: gzip\r\n\r\n")
        answer = _read_answer(sock)
        # 400 under both servers: a request that cannot be framed (RFC 9112 6.3), a client's error, not a 5xx
        _assert_shape(answer, 400, "InputError")
        assert _closed(sock)
    _unharmed(kernel)


def test_a_broken_websocket_handshake_is_refused_in_the_error_shape(kernel: KernelProcess) -> None:
    handshake = b"GET /api/echo/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    with _connect(kernel) as sock:
        sock.sendall(handshake + b"Sec-WebSocket-Version: 13\r\n\r\n")  # no Sec-WebSocket-Key
        shape = _assert_shape(_read_answer(sock), 400, "InputError")
        assert shape["request"] == {"method": "GET", "url": "/api/echo/ws"}
        assert _closed(sock), "the connection stayed open after a refusal"
    _unharmed(kernel)


def test_a_request_in_one_burst_arrives_whole(kernel: KernelProcess) -> None:
    """Head and an 8 MiB body in one write: many reads, the first before a server is chosen (``auto``),
    the next ones while it takes over; none may be lost or reordered."""
    body = os.urandom(8 * 1024 * 1024)
    head = b"POST /api/echo/upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
    with _connect(kernel, timeout=30) as sock:
        sock.sendall(head + body)
        status, _, answer = _read_answer(sock)
    assert status == 200, answer
    assert json.loads(answer) == {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}


# ---------------------------------------------------------------------------- sizes


def test_a_head_over_max_header_size_gets_431(kernel: KernelProcess) -> None:
    shape = _refused(kernel, GET + b"X-Big: " + b"a" * 5000 + b"\r\n\r\n", 431, "RequestHeaderFieldsTooLargeError")
    assert shape["error"]["message"] == "The request head is over the limit of 4096 bytes"
    assert shape["request"] == {"method": "GET", "url": "/api/echo/pid"}
    _unharmed(kernel)


def test_a_head_over_max_header_size_sent_in_pieces_gets_431(kernel: KernelProcess) -> None:
    with _connect(kernel) as sock:
        try:
            for i in range(8):  # 1 KiB fields in reads of their own: no single read is over the limit
                sock.sendall(GET if i == 0 else b"X-Part-%d: %s\r\n" % (i, b"a" * 1024))
                time.sleep(0.05)
            sock.sendall(b"\r\n")
        except OSError:  # refused before the head was complete
            pass
        _assert_shape(_read_answer(sock), 431, "RequestHeaderFieldsTooLargeError")
        assert _closed(sock)
    _unharmed(kernel)


def test_a_request_line_over_max_header_size_gets_414(kernel: KernelProcess) -> None:
    shape = _refused(kernel, b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "UriTooLongError")
    assert shape["error"]["message"] == "The request line is over the limit of 4096 bytes"
    assert shape["request"]["method"] == "GET" and shape["request"]["url"].endswith("...")  # cut short
    _unharmed(kernel)


def test_a_url_over_max_url_length_gets_414_and_the_connection_stays_usable(kernel: KernelProcess) -> None:
    target = b"/api/echo/echo/" + b"a" * 1100 + b"?q=1"
    with _connect(kernel) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        shape = _assert_shape(_read_answer(sock), 414, "UriTooLongError")
        assert shape["error"]["message"] == f"The request target of {len(target)} bytes is over the limit of 1024"
        assert shape["request"] == {"method": "GET", "url": target.decode()}
        sock.sendall(GET + b"\r\n")  # the request was well-formed: the connection goes on
        status, _, body = _read_answer(sock)
        assert status == 200 and json.loads(body)["pid"] > 0


# ---------------------------------------------------------------------------- time


class _Trickle(threading.Thread):
    """Sends ``data`` one byte every ``every`` seconds, until all is sent, it is stopped or the server refuses."""

    def __init__(self, sock: socket.socket, data: bytes, every: float) -> None:
        super().__init__(daemon=True)
        self.sock, self.data, self.every = sock, data, every
        self.sent = 0
        self.halt = threading.Event()
        self.start()

    def run(self) -> None:
        while self.sent < len(self.data) and not self.halt.wait(self.every):
            try:
                self.sock.sendall(self.data[self.sent : self.sent + 1])
            except OSError:
                return
            self.sent += 1

    def stop(self) -> int:
        """Stop; the bytes sent."""
        self.halt.set()
        self.join(5)
        return self.sent


def test_a_slowloris_head_gets_408_and_is_cut_off(kernel: KernelProcess) -> None:
    rest = b"X-Slow: " + b"a" * 1000 + b"\r\n\r\n"
    with _connect(kernel) as sock:
        sock.sendall(GET)
        # one header byte every 4 ms, for 4 s: bytes keep arriving while the refusal is made, and must not be
        # taken for the start of a new request (a refusal naming no request, seen once in CI)
        client = _Trickle(sock, rest, 0.004)
        try:
            shape = _assert_shape(_read_answer(sock), 408, "RequestTimeoutError")
            assert shape["error"]["message"] == "The request head did not arrive within 1s"
            assert shape["request"] == {"method": "GET", "url": "/api/echo/pid"}
            assert _closed(sock), "the slow client's connection was not closed"
        finally:
            assert client.stop() < len(rest)  # cut off long before it was done
    _unharmed(kernel)


def test_idle_connections_are_closed_after_keep_alive_timeout(kernel: KernelProcess) -> None:
    with _connect(kernel) as fresh, _connect(kernel) as used:
        for _ in range(2):  # a connection serves request after request while it is not idle too long
            used.sendall(GET + b"\r\n")
            assert _read_answer(used)[0] == 200
        assert _closed(used), "an idle keep-alive connection was never closed"
        assert _closed(fresh), "a connection that never sent anything was never closed"
        assert fresh.recv(1) == b""  # closed silently: nothing was asked, nothing is answered
    _unharmed(kernel)


def test_a_body_that_pauses_gets_408(kernel: KernelProcess) -> None:
    with _connect(kernel) as sock:
        sock.sendall(UPLOAD + b"Content-Length: 100\r\n\r\nonly a part")  # then nothing
        shape = _assert_shape(_read_answer(sock), 408, "RequestTimeoutError")
        assert shape["error"]["message"] == "The request body paused for over 1s"
        assert shape["request"] == {"method": "POST", "url": "/api/echo/upload"}
        assert _closed(sock)
    _unharmed(kernel)


def test_a_body_that_trickles_gets_408_after_body_timeout(kernel: KernelProcess) -> None:
    with _connect(kernel) as sock:
        sock.sendall(UPLOAD + b"Content-Length: 400\r\n\r\n")
        client = _Trickle(sock, b"a" * 400, 0.25)  # never a pause of 1 s, 100 s in all
        try:
            shape = _assert_shape(_read_answer(sock), 408, "RequestTimeoutError")
            assert shape["error"]["message"] == "The request body took over 2.5s to arrive"
            assert _closed(sock)
        finally:
            assert client.stop() < 400
    _unharmed(kernel)


def test_a_body_that_stalls_after_the_answer_started_cuts_the_connection(kernel: KernelProcess) -> None:
    log_before = len(kernel.output())
    with _connect(kernel) as sock:
        # /stream answers at once without reading the body; the gateway still reads it (for the worker)
        sock.sendall(b"GET /api/echo/stream?mb=50 HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\npart")
        head = sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 200"), head
        got, ready = 0, True
        try:
            while (ready := bool(select.select([sock], [], [], 10)[0])) and (chunk := sock.recv(65536)):
                got += len(chunk)
                time.sleep(0.02)  # a slow reader: the 50 MB would take ~15 s
        except ConnectionResetError:
            pass
        assert ready, "the connection was neither closed nor answered"
        assert got < 50 * 2**20  # cut, not finished
    output = kernel.output()[log_before:]
    assert "the request body paused for over 1s after the answer had started" in output
    assert "Traceback" not in output
    _unharmed(kernel)


# ---------------------------------------------------------------------------- connections


def test_connections_beyond_max_connections_wait_and_the_open_ones_keep_working(kernel: KernelProcess) -> None:
    busy = [_connect(kernel) for _ in range(4)]
    try:
        for sock in busy:  # four connections, each with a request in flight
            sock.sendall(b"GET /api/echo/sleep?s=1.5 HTTP/1.1\r\nHost: x\r\n\r\n")
        with _connect(kernel) as fifth:  # TCP accepts it (the listen backlog); the gateway does not, yet
            fifth.sendall(GET + b"\r\n")
            assert not select.select([fifth], [], [], 1.0)[0], "a fifth connection was served at the limit"
            for sock in busy:
                assert _read_answer(sock)[0] == 200
            busy[0].sendall(GET + b"\r\n")  # at the limit, an open connection goes on working
            assert _read_answer(busy[0])[0] == 200
            for sock in busy:  # a slot frees: the waiting connection is taken and answered
                sock.close()
            status, _, body = _read_answer(fifth)
            assert status == 200 and json.loads(body)["pid"] > 0
    finally:
        for sock in busy:
            sock.close()
    _unharmed(kernel)


# ---------------------------------------------------------------------------- HTTP/2 with the limits


def _curl(*args: str) -> tuple[str, dict[str, Any]]:
    assert CURL is not None
    out = subprocess.run(
        [CURL, "-sS", "--max-time", "10", "-w", "\n%{json}", *args], capture_output=True, text=True, check=True
    ).stdout
    body, _, info = out.rpartition("\n")
    return body, json.loads(info)


@needs_curl
def test_h2c_with_prior_knowledge_works_with_the_limits(kernel: KernelProcess, request: pytest.FixtureRequest) -> None:
    if request.node.callspec.params["kernel"] == "uvicorn":
        pytest.skip("uvicorn speaks HTTP/1.1 only")
    body, info = _curl("--http2-prior-knowledge", f"{kernel.url}/api/echo/echo/h2c?x=1")
    assert info["http_version"] == "2" and json.loads(body)["path"] == "/api/echo/echo/h2c"
    body, info = _curl("--http2-prior-knowledge", f"{kernel.url}/api/echo/echo/{'a' * 1100}")
    assert info["http_version"] == "2" and info["response_code"] == 414
    assert info["content_type"] == "application/json" and json.loads(body)["error"]["name"] == "UriTooLongError"
    body, info = _curl("--http2-prior-knowledge", "-H", f"X-Big: {'a' * 5000}", f"{kernel.url}/api/echo/pid")
    assert info["http_version"] == "2" and info["response_code"] == 431
    assert json.loads(body)["error"]["name"] == "RequestHeaderFieldsTooLargeError"


@needs_curl
def test_h2c_by_upgrade_works_and_http1_stays_for_the_rest(
    kernel: KernelProcess, request: pytest.FixtureRequest
) -> None:
    if request.node.callspec.params["kernel"] == "uvicorn":
        pytest.skip("uvicorn speaks HTTP/1.1 only")
    body, info = _curl("--http2", f"{kernel.url}/api/echo/echo/up?x=1")  # HTTP/1.1 with Upgrade: h2c
    assert info["http_version"] == "2" and json.loads(body)["path"] == "/api/echo/echo/up"
    body, info = _curl("--http1.1", f"{kernel.url}/api/echo/echo/plain")
    assert info["http_version"] == "1.1" and json.loads(body)["path"] == "/api/echo/echo/plain"


def test_an_idle_h2c_connection_is_closed(kernel: KernelProcess, request: pytest.FixtureRequest) -> None:
    if request.node.callspec.params["kernel"] == "uvicorn":
        pytest.skip("uvicorn speaks HTTP/1.1 only")
    import h2.config
    import h2.connection

    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    with _connect(kernel) as sock:
        sock.sendall(client.data_to_send())  # the preface and SETTINGS, then no stream at all
        assert _closed(sock), "an HTTP/2 connection without a stream was kept open"
    _unharmed(kernel)


@pytest.fixture(scope="module")
def tls_kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KernelProcess, Path]]:
    work = tmp_path_factory.mktemp("work")  # the working directory: the certificate goes to var/tls
    config = edge_config(https=True)
    config["backend"]["gateway"].update(LIMITS)
    k = KernelProcess(config, paths=[edge_site(tmp_path_factory.mktemp("site"))], cwd=work).start(wait=False)
    cert = work / "var" / "tls" / "dev-cert.pem"
    context = None
    deadline = time.monotonic() + 60
    while True:  # KernelProcess.wait_ready asks over plain HTTP
        assert time.monotonic() < deadline and k.proc is not None and k.proc.poll() is None, k.output()
        try:
            context = context or ssl.create_default_context(cafile=cert)
            with httpx.Client(verify=context, timeout=2) as client:
                if client.get(f"https://127.0.0.1:{k.port}/.kernel/health/v1/readiness").status_code == 200:
                    break
        except (OSError, ssl.SSLError, httpx.HTTPError):
            pass
        time.sleep(0.1)
    yield k, cert
    k.stop()
    assert "Traceback" not in k.output(), k.output()


@needs_curl
def test_h2_over_tls_works_with_the_limits(tls_kernel: tuple[KernelProcess, Path]) -> None:
    kernel, cert = tls_kernel
    url = f"https://127.0.0.1:{kernel.port}"
    body, info = _curl("--http2", "--cacert", str(cert), f"{url}/api/echo/echo/h2")
    assert info["http_version"] == "2" and json.loads(body)["path"] == "/api/echo/echo/h2"
    # HTTP/1.1 over TLS gets the same refusals in the error shape
    with socket.create_connection(("127.0.0.1", kernel.port), timeout=10) as raw:
        context = ssl.create_default_context(cafile=cert)
        context.set_alpn_protocols(["http/1.1"])
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            sock.sendall(GET + b"X-Big: " + b"a" * 5000 + b"\r\n\r\n")
            _assert_shape(_read_answer(sock), 431, "RequestHeaderFieldsTooLargeError")


def test_a_tls_request_sent_with_the_handshake_arrives_whole(tls_kernel: tuple[KernelProcess, Path]) -> None:
    """TLS 1.3 lets the client send its request with its last handshake message: bytes the server reads
    with the handshake, before the HTTP/1.1 server has the connection, must reach it all the same."""
    kernel, cert = tls_kernel
    body = os.urandom(1024 * 1024)
    head = b"POST /api/echo/upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", kernel.port), timeout=30) as raw:
            context = ssl.create_default_context(cafile=cert)
            context.set_alpn_protocols(["http/1.1"])
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
                sock.sendall(head + body)
                status, _, answer = _read_answer(sock)
        assert status == 200, answer
        assert json.loads(answer) == {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}


def test_a_tls_handshake_that_never_comes_is_cut_off(tls_kernel: tuple[KernelProcess, Path]) -> None:
    kernel, _ = tls_kernel
    with _connect(kernel) as sock:  # a TCP connection that never starts its TLS handshake
        assert _closed(sock), "a connection without a TLS handshake was kept open"

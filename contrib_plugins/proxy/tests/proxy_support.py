"""Helpers of the proxy plugin's tests: fake upstreams on 127.0.0.1, a test CA, real kernels, the error shape.

``Upstream`` answers every request with what it received (method, path, headers, body checksum)
and serves a few special paths: ``/events`` (an event stream whose next event waits for the test),
``/hang`` (never answers until released), ``/reset`` (a connection reset mid-body). ``Flaky``
resets the first ``drops`` connections it accepts, then answers. Nothing here sleeps for ordering:
handlers wait on ``threading.Event`` objects the tests set.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
import socket
import ssl
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from kernel.api import merge_config
from kernel.testing import KernelProcess, free_port

#: a static external-access token (a ``service`` principal)
TOKEN = "s3cret-token-for-proxy-tests"
AUTH = {"authorization": f"Bearer {TOKEN}"}
RESET_SENT = 64 * 1024  # bytes /reset sends before the reset, of the 1 MiB it announces


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset (not a FIN)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass


class Upstream:
    """An HTTP/1.1 upstream recording what reaches it; ``tls`` serves it over https."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.hits: list[dict[str, Any]] = []
        self.event_gates = [threading.Event() for _ in range(3)]
        self.release_hang = threading.Event()
        self.hanging = threading.Event()  # set while a /hang request waits
        self.port = 0
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> Upstream:
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _body(self) -> bytes:
                if self.headers.get("transfer-encoding", "").lower() == "chunked":
                    data = bytearray()
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            self.rfile.readline()
                            return bytes(data)
                        data += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("content-length") or 0))

            def _any(self) -> None:
                body = self._body()
                hit = {
                    "method": self.command,
                    "path": self.path,
                    "headers": [[k.lower(), v] for k, v in self.headers.items()],
                    "sha256": hashlib.sha256(body).hexdigest(),
                    "length": len(body),
                }
                upstream.hits.append(hit)
                route = self.path.split("?")[0]
                if route.endswith("/events"):
                    return self._events()
                if route.endswith("/hang"):
                    upstream.hanging.set()
                    upstream.release_hang.wait(30)
                    return self._send(200, b"{}", [("Content-Type", "application/json")])
                if route.endswith("/reset"):
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(1 << 20))
                    self.end_headers()
                    self.wfile.write(b"r" * RESET_SENT)
                    self.wfile.flush()
                    self.close_connection = True
                    return _reset(self.connection)
                payload = json.dumps(hit).encode()
                extra = [
                    ("Content-Type", "application/json"),
                    ("Cache-Control", "no-store"),
                    ("Set-Cookie", "session=upstream-secret; Path=/"),
                    ("Set-Cookie", "other=1"),
                    ("X-Internal", "do-not-leak"),
                    ("Keep-Alive", "timeout=5"),
                ]
                self._send(201 if self.command == "POST" else 200, payload, extra)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_TRACE = _any

            def _events(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                for i, gate in enumerate(upstream.event_gates):
                    self.wfile.write(f"id: {i}\ndata: event {i}\n\n".encode())
                    self.wfile.flush()
                    if i < len(upstream.event_gates) - 1 and not gate.wait(30):
                        return

            def _send(self, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
                try:
                    self.send_response(status)
                    for name, value in headers:
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(body)
                except OSError:  # the proxy gave up (a timeout test)
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        if self.tls is not None:
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def last(self) -> dict[str, Any]:
        return self.hits[-1]

    def stop(self) -> None:
        self.release_hang.set()
        for gate in self.event_gates:
            gate.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def header(hit: dict[str, Any], name: str) -> list[str]:
    """Values of header ``name`` in a recorded request."""
    return [v for k, v in hit["headers"] if k == name]


class Flaky:
    """Accepts connections: resets the first ``drops`` after reading the request, answers the others."""

    def __init__(self, drops: int = 0) -> None:
        self.drops = drops
        self.connections = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        self.connections += 1
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return conn.close()
            data += chunk
        if self.drops > 0:
            self.drops -= 1
            return _reset(conn)
        body = json.dumps({"flaky": "answered", "connections": self.connections}).encode()
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        conn.close()

    def stop(self) -> None:
        self._sock.close()


def refused_url() -> str:
    """A port nothing listens on."""
    return f"http://127.0.0.1:{free_port()}"


def make_ca(folder: Path) -> tuple[Path, ssl.SSLContext]:
    """A CA (its certificate in ``ca.pem``) and a server context for 127.0.0.1 signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kernel proxy test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    ca_path = folder / "ca.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "server.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "server.pem", folder / "server.key")
    return ca_path, context


def kernel_config(tmp_path: Path, proxy: dict[str, Any], **backend: Any) -> dict[str, Any]:
    """A kernel config with a static service token, fast heartbeats and ``proxy``."""
    cfg: dict[str, Any] = {
        "backend": {
            "gateway": {"requestTimeout": 10},
            "database": {"client": "sqlite", "connection": {"directory": str(tmp_path / "data")}},
            "workers": {"heartbeatInterval": 0.2, "heartbeatTimeout": 3, "shutdownGrace": 5, "killTimeout": 2},
            "auth": {"externalAccess": [{"type": "static", "options": {"token": TOKEN, "subject": "ci-bot"}}]},
        },
        "proxy": proxy,
    }
    merged: dict[str, Any] = merge_config(cfg, {"backend": backend})
    return merged


def start_kernel(config: dict[str, Any], **kw: Any) -> KernelProcess:
    return KernelProcess(config, **kw).start(timeout=30)


def assert_error(resp: httpx.Response, status: int, name: str) -> str:
    """The kernel's error shape with ``status`` and ``name``; returns the message."""
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error", "request", "response"}, body
    assert body["error"]["name"] == name, body
    assert body["response"] == {"statusCode": status}
    assert body["request"]["method"] == resp.request.method
    message: str = body["error"]["message"]
    assert message
    return message

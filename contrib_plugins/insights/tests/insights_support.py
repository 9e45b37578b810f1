"""Helpers of the insights plugin's tests: a fake internal API on 127.0.0.1, real kernels, the error shape."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from kernel.api import merge_config
from kernel.testing import KernelProcess

#: a static external-access token (a ``service`` principal), as in the repository's tests/conftest.py
TOKEN = "s3cret-token-for-insights-tests"
GUEST = "user:development/guest"

PAYMENTS = {
    "id": "payments-api",
    "name": "Payments API",
    "owner": "group:default/payments",
    "metrics": {"deploysLastWeek": 12, "errorRate": 0.002, "p99LatencyMs": 180},
}


class FakeUpstream:
    """The internal API of the seed: ``GET /v1/services/<id>``; every request path is recorded in ``hits``.

    ``payments-api``: 200 with ``PAYMENTS``; ``broken``: 500; ``slow``: 200 after ``delay`` seconds;
    ``not-json``: 200 with text; ``list``: 200 with a JSON array; ``big``: 200 with 600 KB of JSON;
    anything else: 404.
    ``stop()`` closes the port (connections refused); ``start()`` serves on the same port again.
    """

    def __init__(self, delay: float = 2.0) -> None:
        self.hits: list[str] = []
        self.delay = delay
        self.port = 0
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeUpstream:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                upstream.hits.append(self.path)
                prefix = "/v1/services/"
                name = self.path[len(prefix) :] if self.path.startswith(prefix) else None
                if name == "payments-api":
                    self._send(200, json.dumps(PAYMENTS).encode(), "application/json")
                elif name == "broken":
                    self._send(500, b'{"message": "database is on fire"}', "application/json")
                elif name == "slow":
                    time.sleep(upstream.delay)
                    self._send(200, b"{}", "application/json")
                elif name == "not-json":
                    self._send(200, b"<html>maintenance</html>", "text/html")
                elif name == "list":
                    self._send(200, b"[1, 2]", "application/json")
                elif name == "big":  # 600 KB: arrives in many reads
                    self._send(
                        200, json.dumps({**PAYMENTS, "history": ["x" * 100] * 6000}).encode(), "application/json"
                    )
                else:
                    self._send(404, b'{"message": "no such service"}', "application/json")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                try:
                    self.send_response(status)
                    self.send_header("content-type", content_type)
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # the client gave up (a timeout test)
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None


def start_kernel(
    tmp_path: Path, config: dict[str, Any] | None = None, *, env: str = "development", **kw: Any
) -> KernelProcess:
    """A real ``kernel serve`` with every installed plugin (insights, auth...), a static service token."""
    cfg: dict[str, Any] = {
        "backend": {
            "gateway": {"requestTimeout": 10},
            "database": {"client": "sqlite", "connection": {"directory": str(tmp_path / "data")}},
            "workers": {"heartbeatInterval": 0.2, "heartbeatTimeout": 3, "shutdownGrace": 5, "killTimeout": 2},
            "auth": {"externalAccess": [{"type": "static", "options": {"token": TOKEN, "subject": "ci-bot"}}]},
        }
    }
    return KernelProcess(merge_config(cfg, config or {}), env={"KERNEL_ENV": env}, **kw).start(timeout=30)


def guest_token(kernel: KernelProcess) -> str:
    """A real user token from the auth plugin's guest provider (development only)."""
    resp = httpx.get(f"{kernel.url}/api/auth/guest/refresh", timeout=10)
    assert resp.status_code == 200, resp.text
    token: str = resp.json()["backstageIdentity"]["token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def assert_error(resp: httpx.Response, status: int, name: str) -> str:
    """The kernel's error shape with ``status`` and ``name``; returns the message."""
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error", "request", "response"}
    assert body["error"]["name"] == name
    assert body["response"] == {"statusCode": status}
    assert body["request"]["method"] == resp.request.method
    assert body["request"]["url"].startswith(resp.request.url.path.split("/services/")[0])
    message: str = body["error"]["message"]
    assert message
    return message

"""Helpers of the frobs-aggregator tests: fake upstream APIs on 127.0.0.1, real kernels, the error shape."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from kernel.api import merge_config
from kernel.testing import KernelProcess, free_port

#: a static external-access token (a ``service`` principal)
TOKEN = "s3cret-token-for-frobs-tests"
AUTH = {"authorization": f"Bearer {TOKEN}"}

FROBS = [
    {"id": "frob-1", "status": "active"},
    {"id": "frob-2", "status": "active"},
    {"id": "frob-3", "status": "retired"},
    {"id": "frob-4"},
    "not an object",
]
FLERPS = [
    {"id": "flerp-1", "kind": "small"},
    {"id": "flerp-2", "kind": "big"},
    {"id": "flerp-3", "kind": "small"},
]


def expected(items: list[Any], field: str, key: str) -> dict[str, Any]:
    """What the plugin should make of ``items``, computed independently of the plugin's code."""
    counts: Counter[str] = Counter()
    for item in items:
        value = item.get(field) if isinstance(item, dict) else None
        counts[value if isinstance(value, str) else "unknown"] += 1
    return {"count": len(items), key: dict(counts)}


class FakeApi:
    """An upstream API serving ``data`` as JSON at ``path``; every request path is recorded in ``hits``.

    ``mode``: ``ok``; ``broken`` (500); ``not-json`` (200, HTML); ``object`` (200, a JSON object);
    ``slow`` (200 after ``delay`` seconds). ``gate``, when set, holds every answer until it is set
    again (``release()``). ``rendezvous``, when given, is a barrier every request waits at before
    answering. ``stop()`` closes the port (connections refused); ``start()`` serves on it again. The
    port is chosen at construction, so a kernel can be pointed at an API that is not up yet.
    """

    def __init__(self, path: str, data: list[Any], delay: float = 3.0) -> None:
        self.path = path
        self.data = data
        self.delay = delay
        self.mode = "ok"
        self.hits: list[str] = []
        self.port = free_port()
        self.rendezvous: threading.Barrier | None = None
        self._open = threading.Event()
        self._open.set()
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def start(self) -> FakeApi:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                api.hits.append(self.path)
                if api.rendezvous is not None:
                    api.rendezvous.wait()
                api._open.wait(30)
                if self.path != api.path:
                    self._send(404, b'{"message": "no such path"}', "application/json")
                elif api.mode == "broken":
                    self._send(500, b'{"message": "the frob vat is on fire"}', "application/json")
                elif api.mode == "not-json":
                    self._send(200, b"<html>maintenance</html>", "text/html")
                elif api.mode == "object":
                    self._send(200, b'{"items": []}', "application/json")
                else:
                    if api.mode == "slow":
                        time.sleep(api.delay)
                    self._send(200, json.dumps(api.data).encode(), "application/json")

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
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None


def start_kernel(tmp_path: Path, config: dict[str, Any] | None = None, *, wait: bool = True) -> KernelProcess:
    """A real ``kernel serve`` (production mode) with every installed plugin, a static service token;
    ``wait``: until it is ready."""
    cfg: dict[str, Any] = {
        "backend": {
            "gateway": {"requestTimeout": 15},
            "database": {"client": "sqlite", "connection": {"directory": str(tmp_path / "data")}},
            "workers": {"heartbeatInterval": 0.2, "heartbeatTimeout": 3, "shutdownGrace": 5, "killTimeout": 2},
            "auth": {"externalAccess": [{"type": "static", "options": {"token": TOKEN, "subject": "ci-bot"}}]},
        }
    }
    kernel = KernelProcess(merge_config(cfg, config or {}), env={"KERNEL_ENV": "production"})
    return kernel.start(wait=wait, timeout=30)


def summary(kernel: KernelProcess, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.get(
        f"{kernel.url}/api/frobs-aggregator/summary", headers=AUTH if headers is None else headers, timeout=20
    )


def ok(kernel: KernelProcess) -> dict[str, Any]:
    """A 200 summary's body."""
    resp = summary(kernel)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def assert_error(resp: httpx.Response, status: int, name: str) -> str:
    """The kernel's error shape with ``status`` and ``name``, and no stack (production); returns the message."""
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error", "request", "response"}
    assert body["error"]["name"] == name
    assert "stack" not in body["error"]
    assert body["response"] == {"statusCode": status}
    assert body["request"] == {"method": "GET", "url": "/api/frobs-aggregator/summary"}
    message: str = body["error"]["message"]
    assert message
    return message

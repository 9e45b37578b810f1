"""Helpers of the MyAwesomeApi client's tests: a fake API on 127.0.0.1 (the seed's three endpoints)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from kernel.testing import free_port

USERS: dict[str, dict[str, Any]] = {
    "42": {"name": "Ada Lovelace", "email": "ada@example.com", "id": "42", "since": 1843},  # extra fields ignored
    "7": {"name": "Alan Turing", "email": "alan@example.com", "id": "7"},
    "a/b c": {"name": "Odd Id", "email": "odd@example.com", "id": "a/b c"},
}


@dataclass
class Seen:
    """One request as the fake API received it."""

    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Override:
    """An answer the fake gives instead of the real one, to every request, until cleared."""

    status: int
    body: bytes
    content_type: str = "application/json"


@dataclass
class FakeUsersApi:
    """``GET /users``, ``GET /users/{id}``, ``DELETE /users/{id}`` under ``prefix`` (404 ``{"message"}`` elsewhere).

    ``seen``: every request (method, raw path, lower-case headers); ``override``: answer this instead;
    ``delete_answer``: the body of a successful DELETE (``true`` by default; ``b""`` sends a 204);
    ``delay``: seconds to wait before answering.
    """

    prefix: str = ""
    users: dict[str, dict[str, Any]] = field(default_factory=lambda: {k: dict(v) for k, v in USERS.items()})
    seen: list[Seen] = field(default_factory=list)
    override: Override | None = None
    delete_answer: bytes = b"true"
    delay: float = 0.0
    port: int = field(default_factory=free_port)
    _server: Any = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeUsersApi:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._handle("GET")

            def do_DELETE(self) -> None:
                self._handle("DELETE")

            def do_POST(self) -> None:
                self._handle("POST")

            def _handle(self, method: str) -> None:
                api.seen.append(Seen(method, self.path, {k.lower(): v for k, v in self.headers.items()}))
                if api.delay:
                    time.sleep(api.delay)
                if api.override is not None:
                    self._send(api.override.status, api.override.body, api.override.content_type)
                    return
                path = self.path[len(api.prefix) :] if self.path.startswith(api.prefix) else None
                user_id = unquote(path[len("/users/") :]) if path and path.startswith("/users/") else None
                if method == "GET" and path == "/users":
                    self._json(200, list(api.users.values()))
                elif method in ("GET", "DELETE") and user_id is not None and user_id in api.users:
                    if method == "GET":
                        self._json(200, api.users[user_id])
                    else:
                        del api.users[user_id]
                        if api.delete_answer:
                            self._send(200, api.delete_answer, "application/json")
                        else:
                            self._send(204, b"", "application/json")
                else:
                    self._json(404, {"message": f"no such resource: {path}"})

            def _json(self, status: int, data: Any) -> None:
                self._send(status, json.dumps(data).encode(), "application/json")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                try:
                    self.send_response(status)
                    self.send_header("content-type", content_type)
                    if status != 204:
                        self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    if status != 204:
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
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None


def kernel_error(name: str, message: str, status: int, url: str = "/api/proxy/myawesomeapi/users") -> bytes:
    """A body in the kernel's error shape."""
    return json.dumps(
        {
            "error": {"name": name, "message": message},
            "request": {"method": "GET", "url": url},
            "response": {"statusCode": status},
        }
    ).encode()

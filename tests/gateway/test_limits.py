"""The edge's limits on what a client sends, without a server: ``LimitsMiddleware`` around a fake app."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from kernel.errors import RequestTimeoutError
from kernel.gateway.limits import BodyBrokenOff, LimitsMiddleware, server_refusal
from kernel.gateway.middleware.errors import ErrorMiddleware

MAX_URL = 100
MAX_HEAD = 400
MAX_HEADERS = 5
#: a request without a body: an app it reaches answers at once
EMPTY: Message = {"type": "http.request", "body": b""}


class App:
    """Records the requests that reach it and reads their body; answers 200 with what it read."""

    def __init__(self, *, answer_first: bool = False) -> None:
        self.calls: list[Scope] = []
        self.answer_first = answer_first

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls.append(scope)
        if scope["type"] != "http":
            return
        if self.answer_first:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if not self.answer_first:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


class Client:
    """The server's side: the messages it will hand the app (each after ``delay`` seconds), what it was sent."""

    def __init__(self, *messages: Message, delay: float = 0.0) -> None:
        self.messages = list(messages)
        self.delay = delay
        self.sent: list[Message] = []
        self.received = 0

    async def receive(self) -> Message:
        await asyncio.sleep(self.delay)
        self.received += 1
        if self.messages:
            return self.messages.pop(0)
        await asyncio.Event().wait()  # the client neither sends nor leaves
        raise AssertionError("unreachable")

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    def status(self) -> int:
        return int(self.sent[0]["status"])

    def headers(self) -> dict[bytes, bytes]:
        return dict(self.sent[0]["headers"])

    def error(self) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(self.sent[1]["body"])
        return body


def limits(app: Any, *, idle: float = 5.0, total: float = 30.0) -> LimitsMiddleware:
    return LimitsMiddleware(
        app,
        max_url_length=MAX_URL,
        max_header_size=MAX_HEAD,
        max_headers=MAX_HEADERS,
        body_idle_timeout=idle,
        body_timeout=total,
    )


def http(
    path: str = "/api/echo/x",
    *,
    query: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    method: str = "GET",
    http_version: str = "1.1",
) -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "headers": headers or [],
        "http_version": http_version,
    }


def posting(length: int) -> list[tuple[bytes, bytes]]:
    return [(b"content-length", str(length).encode())]


async def test_a_request_within_the_limits_reaches_the_app() -> None:
    app = App()
    client = Client({"type": "http.request", "body": b"", "more_body": False})
    target = "/" + "a" * (MAX_URL - 5)
    await limits(app)(http(target, query=b"q=1", headers=[(b"h", b"v")] * MAX_HEADERS), client.receive, client.send)
    assert len(app.calls) == 1 and client.status() == 200


async def test_a_long_request_target_is_a_414_and_the_app_never_runs() -> None:
    app = App()
    client = Client(EMPTY)
    await limits(app)(http("/api/" + "a" * MAX_URL), client.receive, client.send)
    assert app.calls == []
    assert client.status() == 414
    assert client.error() == {
        "error": {
            "name": "UriTooLongError",
            "message": f"The request target of {MAX_URL + 5} bytes is over the limit of {MAX_URL}",
        },
        "request": {"method": "GET", "url": "/api/" + "a" * MAX_URL},
        "response": {"statusCode": 414},
    }


async def test_the_query_counts_in_the_target() -> None:
    app = App()
    client = Client(EMPTY)
    path = "/" + "a" * (MAX_URL - 10)
    await limits(app)(http(path, query=b"q=" + b"1" * 9), client.receive, client.send)  # path + "?" + query: one over
    assert app.calls == [] and client.status() == 414


async def test_more_header_fields_than_allowed_is_a_431_and_the_app_never_runs() -> None:
    app = App()
    client = Client(EMPTY)
    await limits(app)(http(headers=[(b"x-h", b"1")] * (MAX_HEADERS + 1)), client.receive, client.send)
    assert app.calls == []
    assert client.status() == 431
    error = client.error()
    assert error["error"] == {
        "name": "RequestHeaderFieldsTooLargeError",
        "message": f"{MAX_HEADERS + 1} header fields are over the limit of {MAX_HEADERS}",
    }
    assert error["response"] == {"statusCode": 431} and "stack" not in error["error"]


async def test_an_http2_head_over_the_size_limit_is_a_431_but_http1_is_left_to_the_server() -> None:
    big = [(b"x-big", b"v" * MAX_HEAD)]
    app = App()
    h2 = Client(EMPTY)
    await limits(app)(http(headers=big, http_version="2"), h2.receive, h2.send)
    assert app.calls == [] and h2.status() == 431
    assert h2.error()["error"]["message"] == f"The request head is over the limit of {MAX_HEAD} bytes"
    h1 = Client(EMPTY)
    await limits(app)(http(headers=big), h1.receive, h1.send)  # the HTTP/1 server measured it as it read it
    assert len(app.calls) == 1 and h1.status() == 200


async def test_a_refused_websocket_gets_the_error_shape_or_a_close() -> None:
    app = App()
    scope = {**http("/api/" + "a" * MAX_URL), "type": "websocket"}
    denied = Client()
    await limits(app)({**scope, "extensions": {"websocket.http.response": {}}}, denied.receive, denied.send)
    assert denied.sent[0]["type"] == "websocket.http.response.start" and denied.sent[0]["status"] == 414
    assert json.loads(denied.sent[1]["body"])["error"]["name"] == "UriTooLongError"
    closed = Client()
    await limits(app)(scope, closed.receive, closed.send)  # a server without denial responses
    assert closed.sent == [{"type": "websocket.close", "code": 1008}]
    assert app.calls == []


async def test_other_scopes_pass_through() -> None:
    app = App()
    client = Client(EMPTY)
    await limits(app)({"type": "lifespan"}, client.receive, client.send)
    assert app.calls == [{"type": "lifespan"}]


async def test_a_body_that_pauses_too_long_is_a_408_in_the_error_shape_and_closes_the_connection() -> None:
    app = App()
    client = Client({"type": "http.request", "body": b"part", "more_body": True})
    stack = limits(ErrorMiddleware(app), idle=0.05)
    await stack(http(method="POST", headers=posting(10)), client.receive, client.send)
    assert client.received == 2  # the first part arrived; the app waited for the second
    assert client.status() == 408
    assert client.headers()[b"connection"] == b"close"  # the rest of the body may still come
    assert client.error() == {
        "error": {"name": "RequestTimeoutError", "message": "The request body paused for over 0.05s"},
        "request": {"method": "POST", "url": "/api/echo/x"},
        "response": {"statusCode": 408},
    }


async def test_a_body_over_its_total_time_is_a_timeout_even_with_no_long_pause() -> None:
    app = App()
    parts = [{"type": "http.request", "body": b"x", "more_body": True} for _ in range(20)]
    client = Client(*parts, delay=0.02)
    with pytest.raises(RequestTimeoutError, match=r"request body took over 0\.1s to arrive"):
        await limits(app, idle=1, total=0.1)(http(method="POST", headers=posting(20)), client.receive, client.send)
    assert 2 <= client.received < 20


async def test_an_http2_timeout_adds_no_connection_header() -> None:
    app = App()
    client = Client()  # the body never comes
    await limits(ErrorMiddleware(app), idle=0.05)(http(method="POST", http_version="2"), client.receive, client.send)
    assert client.status() == 408 and b"connection" not in client.headers()


async def test_a_body_stalling_after_the_answer_started_cuts_the_connection() -> None:
    app = App(answer_first=True)
    client = Client({"type": "http.request", "body": b"part", "more_body": True})
    with pytest.raises(BodyBrokenOff, match="after the answer had started"):
        await limits(ErrorMiddleware(app), idle=0.05)(
            http(method="POST", headers=posting(10)), client.receive, client.send
        )
    assert client.sent == [{"type": "http.response.start", "status": 200, "headers": []}]


async def test_a_request_without_a_body_is_not_clocked() -> None:
    seen: list[Message] = []

    async def waits_for_the_client(scope: Any, receive: Any, send: Any) -> None:
        seen.append(await receive())
        seen.append(await receive())  # long after the idle timeout: the client leaving

    client = Client({"type": "http.request", "body": b""}, {"type": "http.disconnect"}, delay=0.05)
    await limits(waits_for_the_client, idle=0.01)(http(), client.receive, client.send)
    assert [m["type"] for m in seen] == ["http.request", "http.disconnect"]


async def test_once_the_body_is_in_the_wait_for_a_disconnect_is_not_clocked() -> None:
    seen: list[Message] = []

    async def streams_long(scope: Any, receive: Any, send: Any) -> None:
        seen.append(await receive())
        seen.append(await receive())

    client = Client({"type": "http.request", "body": b"all"}, {"type": "http.disconnect"})
    app = limits(streams_long, idle=0.05)

    async def slow_disconnect() -> Message:
        if client.received == 1:
            await asyncio.sleep(0.15)
        return await client.receive()

    await app(http(method="POST", headers=posting(3)), slow_disconnect, client.send)
    assert [m["type"] for m in seen] == ["http.request", "http.disconnect"]


def test_a_refusal_by_the_server_names_the_request_it_could_read() -> None:
    headers, body = server_refusal(
        431, "The request head is too large", b"GET /api/echo/" + b"a" * 300 + b" HTTP/1.1\r\nHost: x"
    )
    shape = json.loads(body)
    assert shape["error"] == {"name": "RequestHeaderFieldsTooLargeError", "message": "The request head is too large"}
    assert shape["request"] == {"method": "GET", "url": "/api/echo/" + "a" * 246 + "..."}
    assert (b"connection", b"close") in headers and (b"content-length", str(len(body)).encode()) in headers
    _, garbage = server_refusal(400, "Malformed request", b"\x16\x03\x01 binary")
    assert json.loads(garbage)["request"] == {"method": "", "url": ""}

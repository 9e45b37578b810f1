"""A worker's dispatcher, without a process: protocol messages in, a plugin's ASGI app run, messages out."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, Router

from kernel.errors import NotFoundError, ServiceUnavailableError
from kernel.logs import REQUEST_ID
from kernel.protocol import (
    ACK_EVERY,
    WINDOW,
    Credit,
    End,
    Error,
    Message,
    Principal,
    RequestBody,
    RequestHead,
    ResponseBody,
    ResponseHead,
    decode,
    encode,
)
from kernel.scope_keys import PRINCIPAL
from kernel.worker.dispatch import Dispatcher
from kernel.worker.streams import CHUNK

ROOT = "/api/shop"
USER = Principal("user", "user:default/ada", ownership_refs=["group:default/team"])


class Gateway:
    """One gateway as the worker sees it: what the worker answered, decoded."""

    def __init__(self) -> None:
        self.received: list[tuple[Message, bytes | None]] = []

    def send(self, frame: bytes, data: bytes | memoryview | None) -> None:
        self.received.append((decode(frame), None if data is None else bytes(data)))

    def messages(self, sid: int) -> list[Message]:
        return [m for m, _ in self.received if getattr(m, "stream", None) == sid]

    def head(self, sid: int = 1) -> ResponseHead:
        heads = [m for m in self.messages(sid) if isinstance(m, ResponseHead)]
        assert len(heads) == 1, self.received
        return heads[0]

    def chunks(self, sid: int = 1) -> list[tuple[bytes, bool]]:
        return [(data or b"", m.more) for m, data in self.received if isinstance(m, ResponseBody) and m.stream == sid]

    def credit(self, sid: int = 1) -> int:
        return sum(m.chunks for m in self.messages(sid) if isinstance(m, Credit))


def request(
    sid: int = 1,
    path: str = "/items/x",
    *,
    method: str = "GET",
    query: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"",
    more: bool = False,
    principal: Principal = USER,
) -> RequestHead:
    return RequestHead(
        sid, method, ROOT + path, query, headers or [], ("10.0.0.1", 5000), "https", principal, body, more, ROOT
    )


def feed(dispatcher: Dispatcher, gateway: Gateway, msg: Message, data: bytes | None = None, index: int = 0) -> None:
    """``msg`` as the worker's connection hands it over: decoded, with its frames."""
    frames = [encode(msg)] if data is None else [encode(msg), data]
    dispatcher.on_message(index, decode(frames[0]), frames, gateway.send)


async def until(condition: Callable[[], bool]) -> None:
    async def wait() -> None:
        while not condition():
            await asyncio.sleep(0)

    await asyncio.wait_for(wait(), 5)


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def dispatcher_of(*routes: Route, dev: bool = False) -> Dispatcher:
    return Dispatcher(Router(routes=list(routes)), "shop", ROOT, dev=dev)


@pytest.fixture
def gateway() -> Gateway:
    return Gateway()


# -- the request --------------------------------------------------------------------------------


async def test_the_plugin_sees_the_request_in_its_scope(gateway: Gateway) -> None:
    seen: dict[str, Any] = {}

    async def item(request: Request) -> Response:
        seen.update(request.scope)
        return JSONResponse({"name": request.path_params["name"]})

    dispatcher = dispatcher_of(Route("/items/{name}", item))
    feed(dispatcher, gateway, request(headers=[(b"accept", b"application/json")], query=b"full=1"))
    await until(lambda: not dispatcher.streams)
    assert seen["path"] == ROOT + "/items/x" and seen["root_path"] == ROOT
    assert (seen["method"], seen["scheme"], seen["query_string"]) == ("GET", "https", b"full=1")
    assert seen["headers"] == [(b"accept", b"application/json")]
    assert seen["client"] == ("10.0.0.1", 5000)
    assert seen[PRINCIPAL] == USER
    head = gateway.head()
    assert (head.status, json.loads(head.body), head.more_body) == (200, {"name": "x"}, False)
    assert dispatcher.served == 1


async def test_the_request_body_arrives_in_order_and_earns_credit(gateway: Gateway) -> None:
    parts: list[bytes] = []

    async def upload(request: Request) -> Response:
        async for part in request.stream():
            parts.append(part)
        return Response(b"".join(parts))

    dispatcher = dispatcher_of(Route("/upload", upload, methods=["POST"]))
    feed(dispatcher, gateway, request(path="/upload", method="POST", body=b"head-", more=True))
    total = 2 * ACK_EVERY + 1
    for i in range(total):
        feed(dispatcher, gateway, RequestBody(1, i < total - 1), b"%d-" % i)
    await until(lambda: not dispatcher.streams)
    assert parts[0] == b"head-" and b"".join(parts) == b"head-" + b"".join(b"%d-" % i for i in range(total))
    assert gateway.head().body == b"".join(parts)
    assert gateway.credit() == 2 * ACK_EVERY  # every ACK_EVERY chunks read, none for the last
    assert all(m.chunks == ACK_EVERY for m in gateway.messages(1) if isinstance(m, Credit))


async def test_credit_goes_back_only_as_the_handler_reads_the_body(gateway: Gateway) -> None:
    read = asyncio.Event()
    more = asyncio.Event()

    async def slow(request: Request) -> Response:
        stream = request.stream()
        assert await anext(stream) == b"in-the-head"
        for _ in range(ACK_EVERY):
            await more.wait()
            more.clear()
            await anext(stream)
            read.set()
        return Response(b"")

    dispatcher = dispatcher_of(Route("/slow", slow, methods=["POST"]))
    feed(dispatcher, gateway, request(path="/slow", method="POST", body=b"in-the-head", more=True))
    for _ in range(WINDOW):
        feed(dispatcher, gateway, RequestBody(1, True), b"x")
    await settle()
    assert gateway.credit() == 0  # the window's chunks are in, none read: no credit
    for n in range(1, ACK_EVERY + 1):
        more.set()
        await until(read.is_set)
        read.clear()
        assert gateway.credit() == (ACK_EVERY if n == ACK_EVERY else 0)
    await until(lambda: not dispatcher.streams)


async def test_streams_of_two_gateways_with_the_same_id_are_apart() -> None:
    async def echo(request: Request) -> Response:
        return Response(request.path_params["name"].encode() + b":" + await request.body())

    dispatcher = dispatcher_of(Route("/items/{name}", echo, methods=["POST"]))
    one, two = Gateway(), Gateway()
    feed(dispatcher, one, request(path="/items/one", method="POST", more=True), index=0)
    feed(dispatcher, two, request(path="/items/two", method="POST", more=True), index=1)
    feed(dispatcher, two, RequestBody(1, False), b"body-two", index=1)
    feed(dispatcher, one, RequestBody(1, False), b"body-one", index=0)
    await until(lambda: not dispatcher.streams)
    assert one.head().body == b"one:body-one" and two.head().body == b"two:body-two"


async def test_the_request_id_is_set_for_the_handler(gateway: Gateway) -> None:
    ids: list[str | None] = []

    async def item(request: Request) -> Response:
        ids.append(REQUEST_ID.get())
        return Response(b"")

    dispatcher = dispatcher_of(Route("/items/{name}", item))
    feed(dispatcher, gateway, request(1, headers=[(b"x-request-id", b"req-42")]))
    feed(dispatcher, gateway, request(2, headers=[(b"x-request-id", b"bad id\n")]))
    await until(lambda: not dispatcher.streams)
    assert sorted(ids, key=str) == [None, "req-42"]
    assert REQUEST_ID.get() is None  # the handler's own context: nothing leaks out


async def test_messages_for_streams_the_worker_does_not_have_are_ignored(gateway: Gateway) -> None:
    dispatcher = dispatcher_of()
    feed(dispatcher, gateway, RequestBody(9, False), b"x")
    feed(dispatcher, gateway, Credit(9, 4))
    feed(dispatcher, gateway, End(9))
    assert gateway.received == [] and dispatcher.streams == {}


# -- the answer ---------------------------------------------------------------------------------


async def test_a_long_answer_comes_back_as_a_head_and_chunks_within_the_credit(gateway: Gateway) -> None:
    total = WINDOW + ACK_EVERY + 2

    async def big(request: Request) -> Response:
        async def parts() -> Any:
            yield b"start"
            for i in range(total):
                yield bytes([i]) * CHUNK

        return StreamingResponse(parts())

    dispatcher = dispatcher_of(Route("/big", big))
    feed(dispatcher, gateway, request(path="/big"))
    await settle()
    head = gateway.head()
    assert (head.status, head.body, head.more_body) == (200, b"start", True)
    assert len(gateway.chunks()) == WINDOW and dispatcher.streams  # the window, and it waits for credit
    feed(dispatcher, gateway, Credit(1, ACK_EVERY))
    await settle()
    assert len(gateway.chunks()) == WINDOW + ACK_EVERY
    feed(dispatcher, gateway, Credit(1, ACK_EVERY))
    await until(lambda: not dispatcher.streams)
    chunks = gateway.chunks()
    assert [data for data, _ in chunks[:total]] == [bytes([i]) * CHUNK for i in range(total)]
    assert all(more for _, more in chunks[:-1]) and chunks[-1] == (b"", False)  # the end of the answer


async def test_small_writes_are_gathered_into_fewer_chunks(gateway: Gateway) -> None:
    async def many(request: Request) -> Response:
        async def parts() -> Any:
            yield b"first"
            for i in range(100):
                yield b"%d," % i

        return StreamingResponse(parts())

    dispatcher = dispatcher_of(Route("/many", many))
    feed(dispatcher, gateway, request(path="/many"))
    await until(lambda: not dispatcher.streams)
    body = gateway.head().body + b"".join(data for data, _ in gateway.chunks())
    assert body == b"first" + b"".join(b"%d," % i for i in range(100))
    assert len(gateway.chunks()) < WINDOW


# -- errors ---------------------------------------------------------------------------------------


def error_of(head: ResponseHead) -> dict[str, Any]:
    assert (b"content-type", b"application/json") in head.headers and not head.more_body
    body: dict[str, Any] = json.loads(head.body)
    return body


async def bug(request: Request) -> Response:
    raise RuntimeError("a bug")


async def test_a_plugin_exception_is_an_answer_in_the_error_shape_without_a_stack(gateway: Gateway) -> None:
    dispatcher = dispatcher_of(Route("/bug", bug))
    feed(dispatcher, gateway, request(path="/bug", query=b"x=1"))
    await until(lambda: not dispatcher.streams)
    head = gateway.head()
    assert head.status == 500
    assert error_of(head) == {
        "error": {"name": "RuntimeError", "message": "a bug"},
        "request": {"method": "GET", "url": ROOT + "/bug?x=1"},
        "response": {"statusCode": 500},
    }
    feed(dispatcher, gateway, request(2, path="/items/x"))  # the worker lives on
    await until(lambda: not dispatcher.streams)
    assert gateway.head(2).status == 404


async def test_in_development_the_error_carries_the_stack(gateway: Gateway) -> None:
    dispatcher = dispatcher_of(Route("/bug", bug), dev=True)
    feed(dispatcher, gateway, request(path="/bug"))
    await until(lambda: not dispatcher.streams)
    assert "RuntimeError: a bug" in error_of(gateway.head())["error"]["stack"]


async def test_a_kernel_error_and_a_framework_error_answer_with_their_status(gateway: Gateway) -> None:
    async def missing(request: Request) -> Response:
        raise NotFoundError("No item 'x'")

    async def busy(request: Request) -> Response:
        raise ServiceUnavailableError("busy", retry_after=4.2)

    dispatcher = dispatcher_of(
        Route("/missing", missing), Route("/busy", busy), Route("/only-post", bug, methods=["POST"])
    )
    feed(dispatcher, gateway, request(1, path="/missing"))
    feed(dispatcher, gateway, request(2, path="/busy"))
    feed(dispatcher, gateway, request(3, path="/only-post"))
    feed(dispatcher, gateway, request(4, path="/nowhere"))
    await until(lambda: not dispatcher.streams)
    missing_head, busy_head, post_head, nowhere_head = (gateway.head(i) for i in (1, 2, 3, 4))
    assert (missing_head.status, error_of(missing_head)["error"]) == (
        404,
        {"name": "NotFoundError", "message": "No item 'x'"},
    )
    assert busy_head.status == 503 and (b"retry-after", b"5") in busy_head.headers
    assert post_head.status == 405 and error_of(post_head)["error"]["name"] == "MethodNotAllowedError"
    assert (b"allow", b"POST") in post_head.headers
    assert nowhere_head.status == 404 and error_of(nowhere_head)["error"]["name"] == "NotFoundError"
    assert all("stack" not in error_of(h)["error"] for h in (missing_head, busy_head, post_head, nowhere_head))


async def test_a_handler_returning_without_an_answer_is_a_500(gateway: Gateway) -> None:
    async def silent(scope: Any, receive: Any, send: Any) -> None:
        return None

    dispatcher = Dispatcher(silent, "shop", ROOT, dev=False)
    feed(dispatcher, gateway, request())
    await until(lambda: not dispatcher.streams)
    assert gateway.head().status == 500
    assert "without sending a response" in error_of(gateway.head())["error"]["message"]


async def test_an_exception_after_the_answer_started_breaks_it_off(gateway: Gateway) -> None:
    async def halfway(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        raise RuntimeError("halfway")

    dispatcher = Dispatcher(halfway, "shop", ROOT, dev=False)
    feed(dispatcher, gateway, request())
    await until(lambda: not dispatcher.streams)
    assert gateway.head().status == 200 and gateway.head().body == b"part"
    assert [m for m in gateway.messages(1) if not isinstance(m, ResponseHead)] == [Error(1, "RuntimeError", "halfway")]


# -- ending ---------------------------------------------------------------------------------------


async def test_the_gateway_abandoning_a_stream_cancels_its_handler(gateway: Gateway) -> None:
    cancelled = asyncio.Event()

    async def hang(request: Request) -> Response:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        raise AssertionError("unreachable")

    dispatcher = dispatcher_of(Route("/hang", hang))
    feed(dispatcher, gateway, request(path="/hang"))
    await settle()
    assert dispatcher.streams
    feed(dispatcher, gateway, End(1))
    await until(lambda: not dispatcher.streams)
    assert cancelled.is_set() and gateway.received == []  # nobody waits for an answer


async def test_drain_waits_for_the_requests_in_flight(gateway: Gateway) -> None:
    release = asyncio.Event()

    async def slow(request: Request) -> Response:
        await release.wait()
        return Response(b"finished")

    dispatcher = dispatcher_of(Route("/slow", slow))
    feed(dispatcher, gateway, request(path="/slow"))
    await settle()
    draining = asyncio.create_task(dispatcher.drain(30))
    await asyncio.sleep(0.1)  # two of its rounds
    assert not draining.done()
    release.set()
    await asyncio.wait_for(draining, 5)
    assert gateway.head().body == b"finished" and dispatcher.streams == {}


async def test_drain_cancels_what_is_left_after_the_grace(gateway: Gateway) -> None:
    async def hang(request: Request) -> Response:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    dispatcher = dispatcher_of(Route("/hang", hang))
    feed(dispatcher, gateway, request(path="/hang"))
    await settle()
    await dispatcher.drain(0.05)
    await until(lambda: not dispatcher.streams)
    assert gateway.received == []

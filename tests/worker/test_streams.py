"""One request inside a worker, without a process: ASGI receive and send over protocol messages."""

from __future__ import annotations

import asyncio
import json

import pytest

from kernel.errors import TooManyRequestsError
from kernel.protocol import (
    NO_PRINCIPAL,
    WINDOW,
    Error,
    Message,
    RequestHead,
    ResponseBody,
    ResponseHead,
    decode,
)
from kernel.worker.streams import CHUNK, Stream, error_response

SID = 3


class Gateway:
    def __init__(self) -> None:
        self.received: list[tuple[Message, bytes | None]] = []

    def send(self, frame: bytes, data: bytes | memoryview | None) -> None:
        self.received.append((decode(frame), None if data is None else bytes(data)))

    def chunks(self) -> list[tuple[bytes, bool]]:
        return [(data or b"", m.more) for m, data in self.received if isinstance(m, ResponseBody)]


def head(body: bytes = b"", more: bool = False) -> RequestHead:
    return RequestHead(SID, "POST", "/api/shop/x", b"", [], None, "http", NO_PRINCIPAL, body, more)


@pytest.fixture
def gateway() -> Gateway:
    return Gateway()


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def started(stream: Stream) -> None:
    """An answer begun (200) with its first bytes in the head."""
    await stream.send({"type": "http.response.start", "status": 200, "headers": []})
    await stream.send({"type": "http.response.body", "body": b"first", "more_body": True})


async def test_the_body_in_the_head_comes_first_then_the_chunks_then_the_disconnect(gateway: Gateway) -> None:
    stream = Stream(head(b"a", True), gateway.send)
    stream.feed(b"b", True)
    assert await stream.receive() == {"type": "http.request", "body": b"a", "more_body": True}
    assert await stream.receive() == {"type": "http.request", "body": b"b", "more_body": True}
    waiting = asyncio.create_task(stream.receive())
    await settle()
    assert not waiting.done()  # nothing more yet: it waits for the gateway
    stream.feed(b"c", False)
    assert await waiting == {"type": "http.request", "body": b"c", "more_body": False}
    later = asyncio.create_task(stream.receive())
    await settle()
    assert not later.done()  # the body is in: only the client leaving comes next
    stream.disconnect()
    assert await later == {"type": "http.disconnect"}


async def test_an_answer_in_one_small_write_travels_in_the_head(gateway: Gateway) -> None:
    stream = Stream(head(), gateway.send)
    await stream.send({"type": "http.response.start", "status": 201, "headers": [(b"x-a", b"1")]})
    assert gateway.received == []  # the head waits for the first bytes
    await stream.send({"type": "http.response.body", "body": b"done"})
    assert gateway.received == [(ResponseHead(SID, 201, [(b"x-a", b"1")], b"done", False), None)]
    await stream.send({"type": "http.response.body", "body": b"ignored"})  # after the end: nothing
    await stream.finish()
    assert len(gateway.received) == 1


async def test_a_first_write_over_a_chunk_goes_out_in_chunks(gateway: Gateway) -> None:
    stream = Stream(head(), gateway.send)
    await stream.send({"type": "http.response.start", "status": 200, "headers": []})
    await stream.send({"type": "http.response.body", "body": b"x" * (2 * CHUNK + 1)})
    assert gateway.received[0][0] == ResponseHead(SID, 200, [], b"", True)
    assert [(len(data), more) for data, more in gateway.chunks()] == [(CHUNK, True), (CHUNK, True), (1, False)]


async def test_small_writes_go_out_together_and_a_grant_sends_those_waiting_for_credit(gateway: Gateway) -> None:
    stream = Stream(head(), gateway.send)
    await started(stream)
    for _ in range(WINDOW - 1):
        await stream.send({"type": "http.response.body", "body": b"x" * CHUNK, "more_body": True})
    await stream.send({"type": "http.response.body", "body": b"a", "more_body": True})
    await stream.send({"type": "http.response.body", "body": b"b", "more_body": True})
    await settle()
    assert gateway.chunks()[-1] == (b"ab", True)  # two writes, one chunk: the last of the window
    assert len(gateway.chunks()) == WINDOW
    await stream.send({"type": "http.response.body", "body": b"c", "more_body": True})
    await settle()
    assert len(gateway.chunks()) == WINDOW  # no credit: it waits
    stream.grant(1)  # no sender waits for it: the waiting write goes out now
    assert gateway.chunks()[-1] == (b"c", True)
    ending = asyncio.create_task(stream.send({"type": "http.response.body", "body": b"", "more_body": False}))
    await settle()
    assert not ending.done()  # the last chunk needs credit too
    stream.grant(4)
    await ending
    assert gateway.chunks()[-1] == (b"", False) and stream.finished


async def test_a_disconnect_stops_a_write_waiting_for_credit(gateway: Gateway) -> None:
    stream = Stream(head(), gateway.send)
    await started(stream)
    for _ in range(WINDOW):
        await stream.send({"type": "http.response.body", "body": b"x" * CHUNK, "more_body": True})
    writing = asyncio.create_task(stream.send({"type": "http.response.body", "body": b"y" * CHUNK, "more_body": True}))
    await settle()
    assert not writing.done()
    stream.disconnect()
    with pytest.raises(asyncio.CancelledError):
        await writing
    assert len(gateway.chunks()) == WINDOW


async def test_a_failure_before_the_answer_is_an_error_head_with_its_retry_after(gateway: Gateway) -> None:
    stream = Stream(head(), gateway.send)
    exc = TooManyRequestsError("slow down", retry_after=2)
    status, body = error_response(exc, "POST", "/api/shop/x", dev=False)
    stream.fail(exc, status, body)
    (answer, data), *rest = gateway.received
    assert isinstance(answer, ResponseHead) and answer.status == 429 and data is None and rest == []
    assert answer.headers == [(b"content-type", b"application/json"), (b"retry-after", b"2")]
    assert json.loads(answer.body)["error"] == {"name": "TooManyRequestsError", "message": "slow down"}
    stream.fail(RuntimeError("again"), 500, b"{}")  # answered already: nothing more
    assert len(gateway.received) == 1


async def test_a_failure_after_the_answer_started_is_an_error_message_once(gateway: Gateway) -> None:
    stream = Stream(head(), gateway.send)
    await started(stream)
    stream.fail(RuntimeError("halfway"), 500, b"{}")
    stream.fail(RuntimeError("again"), 500, b"{}")
    assert [m for m, _ in gateway.received[1:]] == [Error(SID, "RuntimeError", "halfway")]


async def test_a_failure_after_the_answer_ended_sends_nothing(gateway: Gateway) -> None:
    stream = Stream(head(), gateway.send)
    await stream.send({"type": "http.response.start", "status": 200, "headers": []})
    await stream.send({"type": "http.response.body", "body": b"all"})
    stream.fail(RuntimeError("late"), 500, b"{}")
    assert len(gateway.received) == 1


async def test_finish_ends_an_answer_left_open_and_refuses_one_never_started(gateway: Gateway) -> None:
    stream = Stream(head(), gateway.send)
    with pytest.raises(RuntimeError, match="without sending a response"):
        await stream.finish()
    await started(stream)
    await stream.finish()
    assert gateway.chunks() == [(b"", False)] and stream.finished


def test_the_error_shape_has_a_stack_only_in_development() -> None:
    try:
        raise ValueError("bad value")
    except ValueError as exc:
        caught = exc
    status, body = error_response(caught, "GET", "/api/shop/x?y=1", dev=False)
    assert (status, json.loads(body)) == (
        500,
        {
            "error": {"name": "ValueError", "message": "bad value"},
            "request": {"method": "GET", "url": "/api/shop/x?y=1"},
            "response": {"statusCode": 500},
        },
    )
    _, dev_body = error_response(caught, "GET", "/api/shop/x", dev=True)
    assert "ValueError: bad value" in json.loads(dev_body)["error"]["stack"]

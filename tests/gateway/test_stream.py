"""One request's answer through the gateway, without a process: a scripted worker and a fake ASGI client.

The worker's side is played by calling ``deliver`` with what a worker sends; what the stream sends it
(credit, body chunks, ``End``) is recorded.
"""

from __future__ import annotations

import asyncio

import pytest
from starlette.types import Message as AsgiMessage

from kernel.errors import GatewayTimeoutError, PayloadTooLargeError, ServiceUnavailableError
from kernel.gateway.relay import AnswerBrokenOff, ClientGone, GatewayStream, WorkerGone, WorkerLink
from kernel.protocol import (
    ACK_EVERY,
    WINDOW,
    Credit,
    End,
    Error,
    Message,
    RequestBody,
    ResponseBody,
    ResponseHead,
    decode,
)

SID = 7


class Worker:
    """The worker's end of the stream: what the gateway sent it; ``gone`` makes sending fail."""

    def __init__(self) -> None:
        self.link = WorkerLink("echo.0.1", "echo")
        self.sent: list[tuple[Message, bytes | None]] = []
        self.gone = False

    def send(self, worker: WorkerLink, frame: bytes, data: bytes | None) -> None:
        assert worker is self.link
        if self.gone:
            raise WorkerGone("worker echo.0.1 is unreachable")
        self.sent.append((decode(frame), data))

    def credit(self) -> int:
        return sum(m.chunks for m, _ in self.sent if isinstance(m, Credit))

    def uploaded(self) -> list[tuple[bytes | None, bool]]:
        return [(data, m.more) for m, data in self.sent if isinstance(m, RequestBody)]


class Client:
    """The ASGI server's side: what it was sent, and what it will receive next."""

    def __init__(self) -> None:
        self.sent: list[AsgiMessage] = []
        self.incoming: asyncio.Queue[AsgiMessage] = asyncio.Queue()

    async def send(self, message: AsgiMessage) -> None:
        self.sent.append(message)

    async def receive(self) -> AsgiMessage:
        return await self.incoming.get()

    def bodies(self) -> list[tuple[bytes, bool]]:
        return [(m["body"], m["more_body"]) for m in self.sent if m["type"] == "http.response.body"]


@pytest.fixture
def worker() -> Worker:
    return Worker()


@pytest.fixture
def client() -> Client:
    return Client()


@pytest.fixture
async def stream(worker: Worker) -> GatewayStream:
    return GatewayStream(SID, worker.link, worker.send)


def chunk(data: bytes, more: bool) -> tuple[ResponseBody, bytes]:
    return ResponseBody(SID, more), data


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


# -- the answer -----------------------------------------------------------------------------------


async def test_an_answer_in_the_head_alone_reaches_the_client(stream: GatewayStream, client: Client) -> None:
    stream.deliver(ResponseHead(SID, 201, [(b"x-a", b"1")], b"done"), b"")
    await stream.answer(client.send, client.receive, 5, uploading=False)
    assert client.sent == [
        {"type": "http.response.start", "status": 201, "headers": [(b"x-a", b"1")]},
        {"type": "http.response.body", "body": b"done", "more_body": False},
    ]


async def test_the_head_and_the_body_reach_the_client_in_order(
    stream: GatewayStream, client: Client, worker: Worker
) -> None:
    answering = asyncio.create_task(stream.answer(client.send, client.receive, 5, uploading=False))
    await settle()
    assert client.sent == []  # nothing before the head
    stream.deliver(ResponseHead(SID, 200, [(b"content-type", b"text/plain")], b"a", True), b"")
    stream.deliver(*chunk(b"b", True))
    await settle()
    stream.deliver(*chunk(b"c", True))
    stream.deliver(*chunk(b"d", False))
    await answering
    assert client.sent[0] == {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"text/plain")],
    }
    assert client.bodies() == [(b"a", True), (b"b", True), (b"c", True), (b"d", False)]
    assert worker.sent == []  # three chunks taken: fewer than ACK_EVERY, and the last earns no credit


async def test_credit_goes_back_as_the_client_takes_chunks(stream: GatewayStream, worker: Worker) -> None:
    taken = asyncio.Semaphore(0)  # chunks the client may take
    got: list[bytes] = []

    async def slow_send(message: AsgiMessage) -> None:
        if message["type"] == "http.response.body" and message["body"]:
            await taken.acquire()
            got.append(message["body"])

    stream.deliver(ResponseHead(SID, 200, [], b"", True), b"")
    for i in range(WINDOW):  # all a worker may send before credit
        stream.deliver(*chunk(b"%d" % i, True))
    answering = asyncio.create_task(stream.answer(slow_send, Client().receive, 5, uploading=False))
    for n in range(1, WINDOW + 1):
        taken.release()
        await settle()
        assert len(got) == n
        assert worker.credit() == n // ACK_EVERY * ACK_EVERY  # in batches, never ahead of the client
    stream.deliver(*chunk(b"last", False))
    taken.release()
    await answering
    assert got == [b"%d" % i for i in range(WINDOW)] + [b"last"]
    assert worker.credit() == WINDOW  # the last chunk earns no credit
    assert all(m.chunks == ACK_EVERY for m, _ in worker.sent if isinstance(m, Credit))


async def test_a_long_answer_flows_under_credit_without_the_worker_ever_over_its_window(
    stream: GatewayStream, client: Client, worker: Worker
) -> None:
    total = 5 * WINDOW + 3
    sent_by_worker = 0

    def worker_sends() -> None:
        """The worker puts on the wire whatever its window allows."""
        nonlocal sent_by_worker
        while sent_by_worker < total and sent_by_worker - worker.credit() < WINDOW:
            stream.deliver(*chunk(b"%d" % sent_by_worker, sent_by_worker < total - 1))
            sent_by_worker += 1

    async def counting_send(message: AsgiMessage) -> None:
        await client.send(message)
        assert worker.credit() <= max(0, len(client.bodies()) - 1)  # only for chunks taken (the head's is none)

    stream.deliver(ResponseHead(SID, 200, [], b"", True), b"")
    worker_sends()
    assert sent_by_worker == WINDOW
    answering = asyncio.create_task(stream.answer(counting_send, client.receive, 5, uploading=False))
    for _ in range(100 * total):  # a few loop turns a chunk; a stall fails below, not at the suite's timeout
        if answering.done():
            break
        await asyncio.sleep(0)
        worker_sends()
    assert answering.done(), f"stalled after {len(client.bodies()) - 1} of {total} chunks"
    await answering
    assert [body for body, _ in client.bodies()[1:]] == [b"%d" % i for i in range(total)]
    assert client.bodies()[-1][1] is False


# -- the upload -----------------------------------------------------------------------------------


async def test_a_request_body_is_uploaded_only_as_the_worker_grants_credit(
    stream: GatewayStream, client: Client, worker: Worker
) -> None:
    total = WINDOW + ACK_EVERY + 1
    for i in range(total):
        client.incoming.put_nowait({"type": "http.request", "body": b"%d" % i, "more_body": i < total - 1})
    uploading = asyncio.create_task(stream.upload(client.receive, 0, 1 << 20))
    await settle()
    assert worker.uploaded() == [(b"%d" % i, True) for i in range(WINDOW)]  # the window, and no more
    stream.deliver(Credit(SID, ACK_EVERY), b"")
    await settle()
    assert len(worker.uploaded()) == WINDOW + ACK_EVERY
    stream.deliver(Credit(SID, ACK_EVERY), b"")
    await settle()
    assert worker.uploaded() == [(b"%d" % i, i < total - 1) for i in range(total)]
    assert not uploading.done() and stream.failure is None  # the body is in: it listens for the client leaving
    client.incoming.put_nowait({"type": "http.disconnect"})
    await uploading
    assert isinstance(stream.failure, ClientGone)


async def test_a_body_over_the_limit_abandons_the_stream_and_the_request_answers_413(
    stream: GatewayStream, client: Client, worker: Worker
) -> None:
    client.incoming.put_nowait({"type": "http.request", "body": b"x" * 6, "more_body": True})
    client.incoming.put_nowait({"type": "http.request", "body": b"x" * 6, "more_body": False})
    await asyncio.wait_for(stream.upload(client.receive, 0, 10), 5)
    assert worker.uploaded() == [(b"x" * 6, True)]
    assert isinstance(worker.sent[-1][0], End) and worker.sent[-1][0].stream == SID
    with pytest.raises(PayloadTooLargeError, match="over the limit of 10 bytes"):
        await stream.answer(client.send, client.receive, 5, uploading=True)
    assert client.sent == []


async def test_a_body_counts_the_bytes_already_sent_in_the_head(stream: GatewayStream, client: Client) -> None:
    client.incoming.put_nowait({"type": "http.request", "body": b"x" * 3, "more_body": False})
    await asyncio.wait_for(stream.upload(client.receive, 8, 10), 5)
    assert isinstance(stream.failure, PayloadTooLargeError)


async def test_a_client_leaving_during_the_upload_fails_the_request(
    stream: GatewayStream, client: Client, worker: Worker
) -> None:
    client.incoming.put_nowait({"type": "http.request", "body": b"a", "more_body": True})
    client.incoming.put_nowait({"type": "http.disconnect"})
    uploading = asyncio.create_task(stream.upload(client.receive, 0, 100))
    with pytest.raises(ClientGone):
        await stream.answer(client.send, client.receive, 5, uploading=True)
    await uploading
    assert client.sent == [] and worker.uploaded() == [(b"a", True)]


async def test_an_upload_to_a_worker_gone_fails_the_stream(
    stream: GatewayStream, client: Client, worker: Worker
) -> None:
    worker.gone = True
    client.incoming.put_nowait({"type": "http.request", "body": b"a", "more_body": False})
    await stream.upload(client.receive, 0, 100)
    assert isinstance(stream.failure, WorkerGone)
    with pytest.raises(ServiceUnavailableError):
        await stream.answer(client.send, client.receive, 5, uploading=True)


async def test_an_upload_waiting_for_credit_stops_when_the_stream_fails(
    stream: GatewayStream, client: Client, worker: Worker
) -> None:
    for _ in range(WINDOW + 1):
        client.incoming.put_nowait({"type": "http.request", "body": b"x", "more_body": True})
    uploading = asyncio.create_task(stream.upload(client.receive, 0, 1 << 20))
    await settle()
    assert len(worker.uploaded()) == WINDOW and not uploading.done()
    stream.fail(WorkerGone("worker echo.0.1 stopped"))
    await uploading
    assert len(worker.uploaded()) == WINDOW


# -- failures -------------------------------------------------------------------------------------


async def test_a_worker_failing_before_the_head_is_a_503(stream: GatewayStream, client: Client) -> None:
    answering = asyncio.create_task(stream.answer(client.send, client.receive, 5, uploading=False))
    await settle()
    stream.deliver(Error(SID, "BootError", "the plugin crashed"), b"")
    with pytest.raises(ServiceUnavailableError, match="BootError: the plugin crashed"):
        await answering
    assert client.sent == []


async def test_a_worker_gone_before_the_head_is_a_503(stream: GatewayStream, client: Client) -> None:
    stream.fail(WorkerGone("worker echo.0.1 of plugin 'echo' stopped while handling the request"))
    with pytest.raises(ServiceUnavailableError, match="stopped while handling"):
        await stream.answer(client.send, client.receive, 5, uploading=False)


async def test_no_head_within_the_timeout_is_a_504(stream: GatewayStream, client: Client) -> None:
    with pytest.raises(GatewayTimeoutError, match=r"Plugin 'echo' did not answer within 0\.01s"):
        await stream.answer(client.send, client.receive, 0.01, uploading=False)
    assert client.sent == []
    stream.deliver(ResponseHead(SID, 200, []), b"")  # too late: ignored, no error
    assert isinstance(stream.failure, GatewayTimeoutError)


async def test_a_worker_failing_after_the_head_breaks_the_answer_off(stream: GatewayStream, client: Client) -> None:
    stream.deliver(ResponseHead(SID, 200, [], b"a", True), b"")
    stream.deliver(*chunk(b"b", True))
    answering = asyncio.create_task(stream.answer(client.send, client.receive, 5, uploading=False))
    await settle()
    stream.deliver(Error(SID, "RuntimeError", "a bug"), b"")
    with pytest.raises(AnswerBrokenOff, match="plugin 'echo' was broken off: RuntimeError: a bug"):
        await answering
    assert client.sent[0]["status"] == 200
    assert client.bodies() == [(b"a", True), (b"b", True)]  # never a last chunk: the server cuts the connection


async def test_a_worker_falling_silent_after_the_head_breaks_the_answer_off(
    stream: GatewayStream, client: Client
) -> None:
    stream.deliver(ResponseHead(SID, 200, [], b"a", True), b"")
    with pytest.raises(AnswerBrokenOff, match=r"sent nothing for 0\.01s"):
        await stream.answer(client.send, client.receive, 0.01, uploading=False)
    assert client.bodies() == [(b"a", True)]


async def test_a_worker_gone_when_credit_is_due_breaks_the_answer_off(
    stream: GatewayStream, client: Client, worker: Worker
) -> None:
    stream.deliver(ResponseHead(SID, 200, [], b"", True), b"")
    for i in range(ACK_EVERY + 1):
        stream.deliver(*chunk(b"%d" % i, True))
    worker.gone = True  # died between two chunks, before any table said so
    with pytest.raises(AnswerBrokenOff, match="unreachable"):
        await stream.answer(client.send, client.receive, 5, uploading=False)
    assert len(client.bodies()) == 1 + ACK_EVERY  # the chunk that earned the credit was the last sent


async def test_a_worker_leaving_after_sending_its_whole_answer_does_not_cut_it(stream: GatewayStream) -> None:
    """A draining worker ends its streams, exits, and the next table drops it: what it sent still reaches the client.

    The worker's handler returns once its last chunk is on the wire, with up to ``WINDOW`` chunks still
    queued in the gateway for a slow client.
    """
    taken = asyncio.Semaphore(0)
    got: list[tuple[bytes, bool]] = []

    async def slow_send(message: AsgiMessage) -> None:
        if message["type"] == "http.response.body" and message["body"]:
            await taken.acquire()
            got.append((message["body"], message["more_body"]))

    stream.deliver(ResponseHead(SID, 200, [], b"", True), b"")
    for i in range(3):
        stream.deliver(*chunk(b"%d" % i, i < 2))  # the whole answer, its last chunk included
    answering = asyncio.create_task(stream.answer(slow_send, Client().receive, 5, uploading=False))
    taken.release()
    await settle()
    assert got == [(b"0", True)]
    stream.fail(WorkerGone("worker echo.0.1 of plugin 'echo' stopped while handling the request"))
    taken.release()
    taken.release()
    await answering
    assert got == [(b"0", True), (b"1", True), (b"2", False)]


async def test_a_worker_gone_after_sending_its_whole_answer_needs_no_credit_to_finish_it(
    stream: GatewayStream, client: Client, worker: Worker
) -> None:
    """Its last chunk is queued here: a failed credit send (the worker exited, no table yet) cuts nothing."""
    stream.deliver(ResponseHead(SID, 200, [], b"", True), b"")
    for i in range(ACK_EVERY + 1):
        stream.deliver(*chunk(b"%d" % i, i < ACK_EVERY))
    worker.gone = True
    await stream.answer(client.send, client.receive, 5, uploading=False)
    assert client.bodies()[1:] == [(b"%d" % i, i < ACK_EVERY) for i in range(ACK_EVERY + 1)]


# -- the client leaving ---------------------------------------------------------------------------


async def test_a_client_leaving_during_a_streamed_answer_stops_it(
    stream: GatewayStream, client: Client, worker: Worker
) -> None:
    stream.deliver(ResponseHead(SID, 200, [], b"a", True), b"")
    answering = asyncio.create_task(stream.answer(client.send, client.receive, 5, uploading=False))
    await settle()
    client.incoming.put_nowait({"type": "http.disconnect"})
    with pytest.raises(ClientGone):
        await answering
    stream.abandon()  # the request side tells the worker to cancel the handler
    assert worker.sent == [(End(SID), None)]


async def test_a_streamed_answer_leaves_the_client_to_an_upload_listening_to_it(
    stream: GatewayStream, client: Client
) -> None:
    client.incoming.put_nowait({"type": "http.disconnect"})
    stream.deliver(ResponseHead(SID, 200, [], b"a", True), b"")
    answering = asyncio.create_task(stream.answer(client.send, client.receive, 5, uploading=True))
    await settle()
    assert client.incoming.qsize() == 1  # the disconnect is still there, for the upload to read
    stream.deliver(*chunk(b"b", False))
    await answering
    assert client.bodies() == [(b"a", True), (b"b", False)]


async def test_abandoning_a_stream_on_a_worker_gone_is_quiet(stream: GatewayStream, worker: Worker) -> None:
    worker.gone = True
    stream.abandon()
    assert worker.sent == []

"""The gateway's streams on workers, without a process: a fake transport records what is sent."""

from __future__ import annotations

import asyncio

import pytest
from starlette.types import Message as AsgiMessage
from starlette.types import Receive, Scope, Send

from kernel.gateway.links import Deliver, WorkerLinks
from kernel.gateway.memory_transport import MemoryTransport
from kernel.gateway.relay import GatewayStream, WorkerGone, WorkerLink
from kernel.gateway.table import RoutingTable
from kernel.gateway.websockets import GatewaySocket
from kernel.protocol import (
    NO_PRINCIPAL,
    WINDOW,
    Heartbeat,
    Message,
    PluginState,
    RequestHead,
    ResponseBody,
    ResponseHead,
    WorkerTable,
    WsAccept,
    decode,
    encode,
)
from kernel.worker.dispatch import Dispatcher
from kernel.worker.streams import CHUNK


class FakeTransport:
    """Records what the gateway sends; a worker in ``unreachable`` raises ``WorkerGone``."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Message, bytes | None]] = []
        self.unreachable: set[str] = set()
        self.deliver: Deliver | None = None
        self.closed = False

    def start(self, deliver: Deliver) -> None:
        self.deliver = deliver

    def send(self, worker: WorkerLink, frame: bytes, data: bytes | None) -> None:
        if worker.id in self.unreachable:
            raise WorkerGone(f"worker {worker.id} is unreachable")
        self.sent.append((worker.id, decode(frame), data))

    def close(self) -> None:
        self.closed = True


def worker_table(generation: int, **plugins: list[str]) -> WorkerTable:
    """Each plugin's ready workers; each worker's routing id is its id and a secret."""
    states = [
        PluginState(pid, "ready", [], wids, routes={w: f"{w}:secret" for w in wids}) for pid, wids in plugins.items()
    ]
    return WorkerTable(generation, states, True)


def head(sid: int) -> bytes:
    return encode(RequestHead(sid, "GET", "/api/echo/x", b"", [], None, "http", NO_PRINCIPAL))


@pytest.fixture
def transport() -> FakeTransport:
    return FakeTransport()


@pytest.fixture
def links(transport: FakeTransport) -> WorkerLinks:
    links = WorkerLinks(RoutingTable(), transport)
    links.start()
    links.apply(worker_table(1, echo=["e1", "e2"], other=["o1"]))
    return links


def link(links: WorkerLinks, plugin_id: str, index: int = 0) -> WorkerLink:
    return links.table.plugins[plugin_id].workers[index]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_the_transport_delivers_to_the_links_and_closes_with_them(links: WorkerLinks) -> None:
    transport = links.transport
    assert isinstance(transport, FakeTransport)
    assert transport.deliver == links.deliver
    links.close()
    assert transport.closed


async def test_open_registers_the_stream_and_sends_its_head_with_its_id(
    links: WorkerLinks, transport: FakeTransport
) -> None:
    e1 = link(links, "echo")
    first = links.open(e1, head)
    second = links.open(e1, head)
    assert isinstance(first, GatewayStream) and (first.id, second.id) == (1, 2)
    assert links.streams == {1: first, 2: second}
    assert e1.inflight == 2
    assert [(wid, type(msg), msg.stream, data) for wid, msg, data in transport.sent] == [  # type: ignore[union-attr]
        ("e1", RequestHead, 1, None),
        ("e1", RequestHead, 2, None),
    ]


async def test_a_head_that_cannot_be_sent_closes_the_stream_and_raises(
    links: WorkerLinks, transport: FakeTransport
) -> None:
    e1 = link(links, "echo")
    transport.unreachable.add("e1")
    with pytest.raises(WorkerGone):
        links.open(e1, head)
    with pytest.raises(WorkerGone):
        links.open_socket(e1, head)
    assert links.streams == {} and e1.inflight == 0 and links.in_flight() == {}
    assert transport.sent == []


async def test_a_message_reaches_its_stream_only_from_the_worker_it_was_sent_to(links: WorkerLinks) -> None:
    stream = links.open(link(links, "echo"), head)
    answer = ResponseHead(stream.id, 200, [], b"mine")
    for impostor in (b"e2:secret", b"e1", b"o1:secret"):  # another worker, the id without its secret
        links.deliver(impostor, answer, [encode(answer)])
    assert not stream.first.done()  # the attempts reached the links, and no stream took them
    links.deliver(b"e1:secret", answer, [encode(answer)])
    assert stream.first.done() and stream.first.result() == answer


async def test_messages_of_unknown_streams_and_other_messages_are_ignored(links: WorkerLinks) -> None:
    stream = links.open(link(links, "echo"), head)
    unknown = ResponseHead(stream.id + 1, 200, [])
    links.deliver(b"e1:secret", unknown, [encode(unknown)])
    beat = Heartbeat(0.0)
    links.deliver(b"e1:secret", beat, [encode(beat)])
    assert not stream.first.done() and stream.failure is None


async def test_a_body_message_hands_its_bytes_frame_to_the_stream(links: WorkerLinks) -> None:
    stream = links.open(link(links, "echo"), head)
    start = ResponseHead(stream.id, 200, [], b"a", True)
    chunk = ResponseBody(stream.id, False)
    links.deliver(b"e1:secret", start, [encode(start)])
    links.deliver(b"e1:secret", chunk, [encode(chunk), b"b"])
    sent: list[AsgiMessage] = []

    async def send(message: AsgiMessage) -> None:
        sent.append(message)

    async def receive() -> AsgiMessage:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    await stream.answer(send, receive, 5, uploading=False)
    assert [m.get("body") for m in sent] == [None, b"a", b"b"]


async def test_a_table_without_a_worker_fails_its_open_streams(links: WorkerLinks) -> None:
    on_e1 = links.open(link(links, "echo", 0), head)
    on_e2 = links.open(link(links, "echo", 1), head)
    socket = links.open_socket(link(links, "echo", 0), head)
    on_o1 = links.open(link(links, "other"), head)
    links.apply(worker_table(2, echo=["e2", "e3"], other=["o1"]))
    for failed in (on_e1, socket):
        assert isinstance(failed.failure, WorkerGone)
        assert "worker e1 of plugin 'echo' stopped" in str(failed.failure)
        with pytest.raises(WorkerGone):
            failed.first.result()
    assert on_e2.failure is None and on_o1.failure is None
    assert not on_e2.first.done() and not on_o1.first.done()


async def test_a_draining_worker_ends_its_streams_and_takes_no_new_one(links: WorkerLinks) -> None:
    e1 = link(links, "echo")
    stream = links.open(e1, head)
    routes = {"e1": "e1:secret", "e2": "e2:secret"}
    echo = PluginState("echo", "ready", [], ["e2"], draining=["e1"], routes=routes)
    links.apply(WorkerTable(2, [echo, PluginState("other", "ready", [], ["o1"], routes={"o1": "o1:secret"})], True))
    assert stream.failure is None and e1.inflight == 1
    assert links.table.plugins["echo"].pick() is not e1
    answer = ResponseHead(stream.id, 200, [], b"still mine")
    links.deliver(b"e1:secret", answer, [encode(answer)])
    assert stream.first.result() == answer


async def test_a_table_dropping_no_worker_fails_nothing(links: WorkerLinks) -> None:
    stream = links.open(link(links, "echo"), head)
    links.apply(worker_table(1, other=["o1"]))  # a resend of the table in force: ignored
    links.apply(worker_table(2, echo=["e1", "e2"], other=["o1"]))
    assert stream.failure is None and link(links, "echo").inflight == 1


async def test_closing_a_stream_releases_its_room_once(links: WorkerLinks) -> None:
    e1 = link(links, "echo")
    stream = links.open(e1, head)
    waiters = [asyncio.create_task(links.table.room("echo", 30)) for _ in range(2)]
    await settle()
    links.close_stream(stream)
    await settle()
    assert e1.inflight == 0 and stream.id not in links.streams
    assert [w.done() for w in waiters] == [True, False]
    links.close_stream(stream)  # closed twice (the request side and a failure): counted once
    await settle()
    assert e1.inflight == 0 and [w.done() for w in waiters] == [True, False]
    waiters[1].cancel()


async def test_in_flight_counts_requests_and_websockets_per_plugin(links: WorkerLinks) -> None:
    assert links.in_flight() == {}
    a = links.open(link(links, "echo", 0), head)
    links.open(link(links, "echo", 1), head)
    socket = links.open_socket(link(links, "other"), head)
    assert isinstance(socket, GatewaySocket)
    assert links.in_flight() == {"echo": 2, "other": 1}
    links.close_stream(a)
    links.close_stream(socket)
    assert links.in_flight() == {"echo": 1}


async def test_a_link_kept_across_tables_keeps_counting_the_streams_it_serves(links: WorkerLinks) -> None:
    e1 = link(links, "echo")
    stream = links.open(e1, head)
    links.apply(worker_table(2, echo=["e1"], other=["o1"]))
    assert link(links, "echo") is e1 and e1.inflight == 1
    links.close_stream(stream)
    assert e1.inflight == 0


async def test_a_websocket_gets_its_workers_answer_to_the_handshake(links: WorkerLinks) -> None:
    socket = links.open_socket(link(links, "other"), head)
    accept = WsAccept(socket.id, "chat")
    links.deliver(b"e1:secret", accept, [encode(accept)])
    assert not socket.first.done()
    links.deliver(b"o1:secret", accept, [encode(accept)])
    assert socket.first.result() == accept


# -- over the in-process transport --------------------------------------------------------------


async def test_a_streamed_answer_crosses_the_in_process_transport_under_credit() -> None:
    parts = 2 * WINDOW + 1

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-path", scope["path"].encode())]})
        for i in range(parts):
            await send({"type": "http.response.body", "body": bytes([i]) * CHUNK, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    transport = MemoryTransport()
    links = WorkerLinks(RoutingTable(), transport)
    links.start()
    links.apply(worker_table(1, echo=["e1"]))
    transport.add("e1:secret", Dispatcher(app, "echo", "/api/echo", dev=False))
    stream = links.open(link(links, "echo"), head)
    sent: list[AsgiMessage] = []

    async def send(message: AsgiMessage) -> None:
        sent.append(message)

    async def receive() -> AsgiMessage:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    await asyncio.wait_for(stream.answer(send, receive, 5, uploading=False), 10)
    links.close_stream(stream)
    assert sent[0] == {"type": "http.response.start", "status": 200, "headers": [(b"x-path", b"/api/echo/x")]}
    bodies = [m["body"] for m in sent[1:]]
    assert bodies[:2] == [bytes([0]) * CHUNK, bytes([1]) * CHUNK]  # the first write travelled in the head
    assert b"".join(bodies) == b"".join(bytes([i]) * CHUNK for i in range(parts))
    assert links.in_flight() == {}


async def test_the_in_process_transport_refuses_a_worker_it_does_not_have_and_stops_when_closed() -> None:
    transport = MemoryTransport()
    links = WorkerLinks(RoutingTable(), transport)
    links.start()
    links.apply(worker_table(1, echo=["e1", "e2"]))
    transport.add("e1:secret", Dispatcher(None, "echo", "/api/echo", dev=False))
    with pytest.raises(WorkerGone, match="worker e2 of plugin 'echo' is unreachable"):
        links.open(link(links, "echo", 1), head)
    links.close()
    with pytest.raises(WorkerGone):
        links.open(link(links, "echo", 0), head)
    assert links.streams == {}

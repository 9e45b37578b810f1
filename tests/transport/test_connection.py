"""Channels over real ZeroMQ sockets: decoding once, bad frames dropped, the handshake, unreachable peers."""

from __future__ import annotations

import asyncio
import os
import tempfile

import zmq

from kernel import protocol as p
from kernel.errors import ProtocolError
from kernel.transport.connection import Channel, hello, hello_refusal
from kernel.transport.endpoints import IpcTransport
from kernel.transport.sockets import dealer, router


async def test_messages_arrive_decoded_with_their_peer_and_bad_frames_go_aside() -> None:
    transport = IpcTransport()
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    got: asyncio.Queue[tuple[bytes, p.Message, list[bytes]]] = asyncio.Queue()
    bad: asyncio.Queue[tuple[bytes, ProtocolError]] = asyncio.Queue()
    server = Channel(
        router(ctx, transport.endpoint("srv")),
        lambda peer, msg, frames: got.put_nowait((peer, msg, frames)),
        routed=True,
        name="test",
        on_bad_frame=lambda peer, exc: bad.put_nowait((peer, exc)),
    )
    client = Channel(dealer(ctx, transport.endpoint("srv"), "client-1"), lambda *a: None, routed=False, name="client")
    try:
        client.send(b"\xc1 not msgpack")
        client.send(p.encode(p.ResponseBody(3, True)), b"x" * 100_000)  # a body: zero-copy frame
        peer, exc = await asyncio.wait_for(bad.get(), 5)
        assert peer == b"client-1" and "undecodable frame" in str(exc)
        peer, msg, frames = await asyncio.wait_for(got.get(), 5)
        assert (peer, msg, bytes(frames[-1])) == (b"client-1", p.ResponseBody(3, True), b"x" * 100_000)
        assert server.offer(p.Heartbeat(1.0), to=b"client-1")
        assert not server.offer(p.Heartbeat(1.0), to=b"nobody")  # no such peer: false, nothing raised
    finally:
        client.close()
        server.close()
        ctx.term()
        transport.close()


def test_the_handshake_accepts_our_version_and_refuses_others() -> None:
    ours = p.decode(hello("worker", plugin_id="echo", worker_id="echo.0.1"))
    assert isinstance(ours, p.Hello) and ours.version == p.PROTOCOL_VERSION and ours.plugin_id == "echo"
    assert hello_refusal(ours, "test") is None
    refused = hello_refusal(p.Hello(p.PROTOCOL_VERSION + 1, "worker", "x", "x.0.1"), "test")
    assert refused is not None and refused.stream == 0 and "protocol version mismatch" in refused.message
    refused = hello_refusal(p.Heartbeat(0.0), "test")
    assert refused is not None and "expected Hello first" in refused.message


def test_an_ipc_transport_removes_its_directory_and_those_of_dead_kernels() -> None:
    stale = os.path.join(tempfile.gettempdir(), "kernel-999999999-stale")
    os.makedirs(stale, exist_ok=True)
    transport = IpcTransport()
    assert not os.path.exists(stale)  # pid 999999999 is not alive
    assert transport.endpoint("control") == f"ipc://{transport.directory}/control"
    transport.close()
    assert not os.path.exists(transport.directory)

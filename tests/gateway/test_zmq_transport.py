"""The gateway's ZeroMQ transport to worker processes: the handshake on its worker socket."""

from __future__ import annotations

import asyncio
import os
import tempfile

import zmq
import zmq.asyncio

from kernel import protocol as p
from kernel.gateway.zmq_transport import ZmqTransport


async def test_gateway_answers_a_peer_of_another_version_with_an_error() -> None:
    run_dir = tempfile.mkdtemp()
    endpoint = f"ipc://{os.path.join(run_dir, 'gw')}"
    delivered: list[p.Message] = []
    transport = ZmqTransport("gateway-0", endpoint)
    transport.start(lambda peer, msg, frames: delivered.append(msg))
    ctx = zmq.asyncio.Context()
    peer = ctx.socket(zmq.DEALER)
    peer.setsockopt(zmq.ROUTING_ID, b"future.0.1")
    peer.connect(endpoint)
    try:
        await peer.send(p.encode(p.Hello(p.PROTOCOL_VERSION + 1, "worker", "future", "future.0.1")))
        reply = p.decode(await asyncio.wait_for(peer.recv(), 5))
        assert isinstance(reply, p.Error)
        assert "protocol version mismatch" in reply.message
        await peer.send(p.encode(p.Hello(p.PROTOCOL_VERSION, "worker", "now", "future.0.1")))
        assert isinstance(p.decode(await asyncio.wait_for(peer.recv(), 5)), p.Hello)
    finally:
        peer.close(0)
        ctx.term()
        transport.close()
    assert delivered == []  # greetings are the transport's own: no stream saw them

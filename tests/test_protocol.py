"""The wire protocol: every message round-trips; another version gets a clear error, not a hang."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

import msgspec
import pytest
import zmq
import zmq.asyncio

from kernel import protocol as p
from kernel.gateway.pool import WorkerPool

SAMPLES = [
    p.Hello(p.PROTOCOL_VERSION, "worker", "echo", "echo.0.1", 42, [p.AuthPolicy("/open", "unauthenticated")]),
    p.RequestHead(
        7,
        "POST",
        "/api/x/y",
        b"a=1",
        [(b"h", b"\x00\xff")],
        ("127.0.0.1", 5),
        "http",
        p.Principal("service", "external:ci", ["x"]),
        b"\x00body",
        True,
        "/api/x",
        "2",
    ),
    p.RequestBody(7, False),
    p.ResponseHead(7, 201, [(b"content-type", b"application/json")], b"{}", False),
    p.ResponseBody(7, True),
    p.End(7),
    p.Error(7, "InputError", "bad", "trace"),
    p.Credit(7, 3),
    p.Heartbeat(1.5),
    p.Shutdown(10.0),
    p.WorkerTable(3, [p.PluginState("x", "ready", [], ["x.0.1"])], True),
]


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips(msg: p.Message) -> None:
    assert p.decode(p.encode(msg)) == msg


def test_undecodable_frame_is_a_protocol_error() -> None:
    with pytest.raises(p.ProtocolError, match="protocol version 1"):
        p.decode(b"\xc1garbage")
    with pytest.raises(p.ProtocolError):
        p.decode(msgspec.msgpack.encode([99, "from the future"]))


def test_check_hello_rejects_other_versions() -> None:
    with pytest.raises(p.ProtocolError, match="speaks version 2, this side speaks 1"):
        p.check_hello(p.Hello(2, "worker", "echo", "echo.0.1"))
    with pytest.raises(p.ProtocolError, match="expected Hello first"):
        p.check_hello(p.Heartbeat(0.0))


def test_protocol_has_no_io_imports() -> None:
    source = Path(p.__file__).read_text()
    assert "import zmq" not in source and "import asyncio" not in source


async def test_gateway_answers_a_peer_of_another_version_with_an_error() -> None:
    run_dir = tempfile.mkdtemp()
    endpoint = f"ipc://{os.path.join(run_dir, 'gw')}"
    pool = WorkerPool(0, endpoint, f"ipc://{os.path.join(run_dir, 'ctl')}", lambda grace: None)
    pool.start()
    ctx = zmq.asyncio.Context()
    peer = ctx.socket(zmq.DEALER)
    peer.setsockopt(zmq.ROUTING_ID, b"future.0.1")
    peer.connect(endpoint)
    try:
        await peer.send(p.encode(p.Hello(2, "worker", "future", "future.0.1")))
        reply = p.decode(await asyncio.wait_for(peer.recv(), 5))
        assert isinstance(reply, p.Error)
        assert "protocol version mismatch" in reply.message
        await peer.send(p.encode(p.Hello(p.PROTOCOL_VERSION, "worker", "now", "future.0.1")))
        assert isinstance(p.decode(await asyncio.wait_for(peer.recv(), 5)), p.Hello)
    finally:
        peer.close(0)
        ctx.term()
        pool.close()

"""The wire protocol: every message round-trips; another version gets a clear error, not a hang."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from kernel import protocol as p

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
    p.ConfigUpdate(b"\x81\xa1a\x01"),
    p.RequestHead(8, "GET", "/api/x/ws", b"", [], None, "https", p.NO_PRINCIPAL, websocket=True),
    p.Policies([p.AuthPolicy("/open", "unauthenticated")]),
    p.WsAccept(8, "kernel.v1", [(b"x-a", b"1")]),
    p.WsMessage(8, True),
    p.WsClose(8, 4000, "bye"),
]


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips(msg: p.Message) -> None:
    assert p.decode(p.encode(msg)) == msg


def test_undecodable_frame_is_a_protocol_error() -> None:
    with pytest.raises(p.ProtocolError, match=f"protocol version {p.PROTOCOL_VERSION}"):
        p.decode(b"\xc1garbage")
    with pytest.raises(p.ProtocolError):
        p.decode(msgspec.msgpack.encode([99, "from the future"]))


def test_check_hello_rejects_other_versions() -> None:
    with pytest.raises(
        p.ProtocolError, match=f"speaks version {p.PROTOCOL_VERSION + 1}, this side speaks {p.PROTOCOL_VERSION}"
    ):
        p.check_hello(p.Hello(p.PROTOCOL_VERSION + 1, "worker", "echo", "echo.0.1"))
    with pytest.raises(p.ProtocolError, match="expected Hello first"):
        p.check_hello(p.Heartbeat(0.0))


def test_protocol_has_no_io_imports() -> None:
    source = Path(p.__file__).read_text()
    assert "import zmq" not in source and "import asyncio" not in source

"""A process that reaches a gateway's worker socket cannot answer for a worker, nor swamp it.

Every worker is told the gateways' addresses, so any local process can connect there. The
gateway takes a stream's messages only from the worker it dispatched the stream to, and every
socket refuses frames over ``MAX_FRAME`` (the sender is disconnected, the frame never read).
"""

from __future__ import annotations

import glob
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import zmq

from kernel import protocol as p
from kernel.testing import KernelProcess, wait_for
from kernel.transport.sockets import MAX_FRAME


def _gateway_endpoint(kernel: KernelProcess) -> str:
    assert kernel.proc is not None
    [path] = glob.glob(f"/tmp/kernel-{kernel.proc.pid}-*/gateway-0")
    return f"ipc://{path}"


@pytest.fixture
def rogue(kernel: KernelProcess) -> Iterator[zmq.Socket[bytes]]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.ROUTING_ID, b"rogue.0.1")
    sock.connect(_gateway_endpoint(kernel))
    sock.send(p.encode(p.Hello(p.PROTOCOL_VERSION, "worker", "echo", "rogue.0.1", os.getpid())))
    yield sock
    sock.close(0)
    ctx.term()


def test_a_rogue_peer_cannot_answer_another_workers_streams(
    kernel: KernelProcess, client: httpx.Client, rogue: zmq.Socket[bytes]
) -> None:
    results: list[httpx.Response] = []
    slow = [threading.Thread(target=lambda: results.append(client.get("/api/echo/sleep", params={"s": 1.5})))
            for _ in range(3)]  # fmt: skip
    for t in slow:
        t.start()
    wait_for(lambda: client.get("/api/echo/pid").json()["sleeping"] >= 3, 10, "the requests never reached echo")
    for sid in range(1, 3000):  # every stream id this gateway may have open
        rogue.send(p.encode(p.ResponseHead(sid, 200, [], b"forged", False)))
    for t in slow:
        t.join(20)
    assert len(results) == 3
    for answer in results:
        assert answer.status_code == 200 and answer.json()["slept"] == 1.5, answer.text


def test_an_oversized_frame_is_refused_unread(kernel: KernelProcess, client: httpx.Client) -> None:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    events: list[dict[str, Any]] = []
    monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
    sock.connect(_gateway_endpoint(kernel))
    try:
        sock.send(b"\x00" * (MAX_FRAME + 1))

        def disconnected() -> bool:
            if monitor.poll(100):
                events.append(monitor.recv_multipart())  # type: ignore[arg-type]
            return bool(events)

        wait_for(disconnected, 10, "the gateway kept a peer that sent an oversized frame")
        assert client.get("/api/echo/pid").status_code == 200  # and it serves on
    finally:
        sock.disable_monitor()
        monitor.close(0)
        sock.close(0)
        ctx.term()


def test_a_dead_workers_connection_cannot_be_taken_over(kernel: KernelProcess, client: httpx.Client) -> None:
    """ZeroMQ gives a routing id to whoever connects with it once its holder is gone; a worker's is secret.

    The supervisor is paused while the worker dies, so the gateway keeps routing to the dead
    worker (the window before a new table, held open): a process that connects under the
    worker's id, as every worker can learn it, still gets none of its requests.
    """
    from tests.conftest import TOKEN

    plugins = client.get("/.kernel/instance/v1/plugins", headers={"authorization": f"Bearer {TOKEN}"}).json()
    [wid] = [w for p in plugins["plugins"] if p["id"] == "echo" for w in p["workers"]]
    pid = client.get("/api/echo/pid").json()["pid"]
    assert kernel.proc is not None
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    received: list[Any] = []
    answers: list[int] = []

    def traffic() -> None:
        with httpx.Client(base_url=kernel.url, timeout=10) as c:
            for _ in range(5):
                answers.append(c.get("/api/echo/pid").status_code)

    sender = threading.Thread(target=traffic)
    os.kill(kernel.proc.pid, signal.SIGSTOP)
    try:
        os.kill(pid, signal.SIGKILL)
        sender.start()
        deadline = time.monotonic() + 1.2
        while time.monotonic() < deadline:  # one claim after another, as the old connection goes
            rogue = ctx.socket(zmq.DEALER)
            rogue.setsockopt(zmq.LINGER, 0)
            rogue.setsockopt(zmq.ROUTING_ID, wid.encode())
            rogue.connect(_gateway_endpoint(kernel))
            rogue.send(p.encode(p.Hello(p.PROTOCOL_VERSION, "worker", "echo", wid, os.getpid())))
            while rogue.poll(50):
                received.append(p.decode(rogue.recv()))
            rogue.close(0)
    finally:
        os.kill(kernel.proc.pid, signal.SIGCONT)
        sender.join(30)
        ctx.term()
    assert not [m for m in received if isinstance(m, p.RequestHead)], received
    assert answers and answers[-1] == 200, answers  # the replacement serves

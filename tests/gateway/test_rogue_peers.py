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


def _greeted(sock: zmq.Socket[bytes]) -> None:
    """Wait for the gateway's ``Hello``, its answer to ours: the frames sent before it were all read."""
    assert sock.poll(10_000), "the gateway never answered the rogue's Hello"
    answer = p.decode(sock.recv())
    assert isinstance(answer, p.Hello) and answer.role == "gateway", answer


@pytest.fixture
def rogue(kernel: KernelProcess) -> Iterator[zmq.Socket[bytes]]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.ROUTING_ID, b"rogue.0.1")
    sock.connect(_gateway_endpoint(kernel))
    sock.send(p.encode(p.Hello(p.PROTOCOL_VERSION, "worker", "echo", "rogue.0.1", os.getpid())))
    _greeted(sock)  # connected, and the gateway reads what it sends
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
    rogue.send(p.encode(p.Hello(p.PROTOCOL_VERSION, "worker", "echo", "rogue.0.1", os.getpid())))
    _greeted(rogue)  # the gateway read every forged answer (in order, before this Hello)...
    assert client.get("/api/echo/pid").json()["sleeping"] >= 3  # ...while the three streams were still open
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
    sent: list[float] = []  # when each request went out
    held: list[float] = []  # when the gateway greeted a claim: connected under the worker's id from then on

    def traffic() -> None:
        hooks = {"request": [lambda request: sent.append(time.monotonic())]}
        with httpx.Client(base_url=kernel.url, timeout=10, event_hooks=hooks) as c:
            for _ in range(5):
                answers.append(c.get("/api/echo/pid").status_code)

    def claim(until: float) -> None:
        """Connect under the worker's id and take what comes until ``until``; give way to the next claim
        if the gateway does not greet this one soon (the id still held by an earlier claim's connection)."""
        rogue = ctx.socket(zmq.DEALER)
        rogue.setsockopt(zmq.LINGER, 0)
        rogue.setsockopt(zmq.ROUTING_ID, wid.encode())
        rogue.connect(_gateway_endpoint(kernel))
        try:
            rogue.send(p.encode(p.Hello(p.PROTOCOL_VERSION, "worker", "echo", wid, os.getpid())))
            claimed = time.monotonic()
            while time.monotonic() < until:
                if rogue.poll(20):
                    received.append(msg := p.decode(rogue.recv()))
                    if isinstance(msg, p.Hello):
                        held.append(time.monotonic())
                        if sender.ident is None:
                            sender.start()  # requests for the dead worker, while the impostor is connected
                elif not held and time.monotonic() - claimed > 0.3:
                    return
        finally:
            rogue.close(0)

    sender = threading.Thread(target=traffic)
    os.kill(kernel.proc.pid, signal.SIGSTOP)
    try:
        os.kill(pid, signal.SIGKILL)
        # a pause well within heartbeatTimeout (3 s): longer, and the supervisor would take the gateway for hung
        deadline = time.monotonic() + 1.2
        while time.monotonic() < deadline:  # one claim after another, as the old connection goes
            claim(deadline)
    finally:
        os.kill(kernel.proc.pid, signal.SIGCONT)
        if sender.ident is not None:
            sender.join(30)
        ctx.term()
    # the attack happened: an impostor was connected under the worker's id (the gateway greeted it), and
    # requests for the dead worker went out while it was
    assert held, received
    assert [t for t in sent if held[0] <= t < deadline], (held, sent)
    assert all(isinstance(m, p.Hello) and m.role == "gateway" for m in received), received  # and it got nothing else
    assert answers and answers[-1] == 200, answers  # the replacement serves

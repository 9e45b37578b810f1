"""A remote worker's identity on the supervisor's join port: its worker id counts only with the key it joined with."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import zmq

from kernel.protocol import Message
from kernel.supervisor.children import Child
from kernel.supervisor.control import ControlChannel
from kernel.supervisor.remote import RemoteProcess
from kernel.testing import free_port, wait_for_async
from kernel.transport.connection import hello
from kernel.transport.curve import ClientKeys, CurveServer, generate, load_public


async def test_another_allowed_key_cannot_speak_as_a_joined_worker(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("server", "worker", "impostor"):
        generate(tmp_path, name)
    (tmp_path / "allowed").mkdir()
    for name in ("worker", "impostor"):  # both may join: the impostor is a legitimate worker of another host
        shutil.copy(tmp_path / f"{name}.key", tmp_path / "allowed")
    worker_key = load_public(tmp_path / "worker.key").decode()
    child = Child(
        "echo.remote.1", "worker", RemoteProcess(lambda: None), plugin_id="echo", secret="s3cret", key=worker_key
    )
    ready: list[Child] = []
    joins: list[Message] = []

    def on_join(peer: bytes, msg: Message, key: str) -> Message:
        joins.append(msg)
        return msg

    join = f"tcp://127.0.0.1:{free_port()}"
    curve = CurveServer(tmp_path / "server.key_secret", tmp_path / "allowed", 5.0, "supervisor")
    control = ControlChannel(
        f"ipc://{tmp_path}/control", {child.ident: child}, lambda c, h: ready.append(c), lambda: None,
        curve=curve, join=join, on_join=on_join,
    )  # fmt: skip
    control.start()
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sockets = []
    try:
        greeting = hello("worker", plugin_id="echo", worker_id=child.ident, secret="s3cret")  # even with the secret

        def connect(name: str) -> None:
            sock = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.ROUTING_ID, child.ident.encode())
            ClientKeys.load(tmp_path / "server.key", tmp_path / f"{name}.key_secret").apply(sock)
            sock.connect(join)
            sock.send(greeting)
            sockets.append(sock)

        connect("impostor")
        with caplog.at_level(logging.ERROR, logger="kernel"):
            await wait_for_async(lambda: "dropped a message for worker echo.remote.1" in caplog.text, 10)
        assert not ready and not child.ready
        sockets.pop().close(0)  # the impostor leaves

        def greeted() -> bool:  # until the socket has seen the impostor go, the id is taken: connect again
            if not ready:
                if sockets:
                    sockets.pop().close(0)
                connect("worker")
            return ready == [child]

        await wait_for_async(greeted, 15, interval=1.0)
        assert joins == []  # a Hello naming a worker id is never a join
    finally:
        for sock in sockets:
            sock.close(0)
        control.close()
        ctx.term()

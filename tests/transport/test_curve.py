"""kernel.transport.curve: a socket bound in plain text on ipc:// and with CURVE on tcp://, and its gate."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from kernel.testing import free_port
from kernel.transport.curve import ClientKeys, CurveServer, generate, load_public, peer_key


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    for name in ("server", "worker", "stranger"):
        generate(tmp_path, name)
    (tmp_path / "allowed").mkdir()
    shutil.copy(tmp_path / "worker.key", tmp_path / "allowed")
    return tmp_path


@pytest.fixture
def router(keys: Path, tmp_path: Path) -> Iterator[tuple[zmq.Socket[bytes], CurveServer, str]]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(f"ipc://{tmp_path}/plain.sock")  # before the CURVE options: stays plain text
    curve = CurveServer(keys / "server.key_secret", keys / "allowed", 2.0, "test")
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    curve.bind(sock, endpoint)
    yield sock, curve, endpoint
    curve.close()
    sock.close(0)
    ctx.term()


def _client(ctx: zmq.Context[zmq.Socket[bytes]], endpoint: str, keys: ClientKeys | None) -> zmq.Socket[bytes]:
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if keys is not None:
        keys.apply(sock)
    sock.connect(endpoint)
    sock.send(b"hello")
    return sock


def _received(sock: zmq.Socket[bytes], seconds: float) -> list[tuple[bytes, str]]:
    got = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if sock.poll(50):
            frames = sock.recv_multipart(copy=False)
            got.append((frames[-1].bytes, peer_key(frames[-1])))
    return got


def test_only_allowed_keys_get_through_and_the_key_travels_with_each_message(
    keys: Path, tmp_path: Path, router: tuple[zmq.Socket[bytes], CurveServer, str], caplog: pytest.LogCaptureFixture
) -> None:
    sock, _curve, endpoint = router
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    worker = ClientKeys.load(keys / "server.key", keys / "worker.key_secret")
    stranger = ClientKeys.load(keys / "server.key", keys / "stranger.key_secret")
    clients = [
        _client(ctx, endpoint, worker),
        _client(ctx, endpoint, stranger),
        _client(ctx, endpoint, None),  # plain text to the CURVE port
        _client(ctx, f"ipc://{tmp_path}/plain.sock", None),  # the ipc endpoint stays plain text
    ]
    with caplog.at_level(logging.ERROR, logger="kernel.curve"):
        got = _received(sock, 1.5)
    assert sorted(got) == sorted([(b"hello", load_public(keys / "worker.key").decode()), (b"hello", "")])
    assert "test refused a connection from 127.0.0.1: CURVE key" in caplog.text

    shutil.copy(keys / "stranger.key", keys / "allowed")  # rotation: the next handshake sees it
    late = _client(ctx, endpoint, stranger)
    assert _received(sock, 1.5) == [(b"hello", load_public(keys / "stranger.key").decode())]
    for c in [*clients, late]:
        c.close(0)
    ctx.term()

"""ZeroMQ sockets on the event loop: callbacks on receive, non-blocking sends.

zmq.asyncio allocates a future per receive; on the hot path we instead drain
the socket in the event loop's reader callback and hand each message to a
plain function. ``router`` and ``dealer`` make the two socket kinds the kernel
uses, with the options every process sets the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import zmq

OnMessage = Callable[[list[bytes]], None]
_BATCH = 512
#: bodies at least this large are sent without copying
ZERO_COPY = 64 * 1024


class LoopSocket:
    """Wraps a zmq socket; ``on_message(frames)`` runs in the event loop for each message."""

    def __init__(self, sock: zmq.Socket[bytes], on_message: OnMessage) -> None:
        self.sock = sock
        self._on_message = on_message
        self._loop = asyncio.get_running_loop()
        self._scheduled = False
        self._closed = False
        self._fd: int = sock.FD
        self._loop.add_reader(self._fd, self._drain)
        self._loop.call_soon(self._drain)

    def send(self, frames: Sequence[bytes | memoryview], copy: bool = True) -> None:
        """Queue a message without blocking; raises ``zmq.ZMQError`` if it cannot be queued.

        ``copy=False`` hands large buffers to ZeroMQ without copying them.
        """
        self.sock.send_multipart(frames, zmq.NOBLOCK, copy=copy)
        # A send can swallow the edge that announces incoming messages: look again soon.
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled and not self._closed:
            self._scheduled = True
            self._loop.call_soon(self._drain)

    def _drain(self) -> None:
        self._scheduled = False
        if self._closed:
            return
        recv = self.sock.recv_multipart
        handle = self._on_message
        for _ in range(_BATCH):
            try:
                frames = recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            except zmq.ZMQError:
                if self._closed:
                    return
                raise
            handle(frames)
        self._schedule()  # more may be waiting; let other callbacks run first

    def close(self, linger: int = 0) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._loop.remove_reader(self._fd)
        except Exception:  # the loop may be closing
            pass
        self.sock.close(linger)


Context = zmq.Context[zmq.Socket[bytes]]


def _socket(ctx: Context, kind: int, unbounded: bool) -> zmq.Socket[bytes]:
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    if unbounded:  # flow control is the protocol's job
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
    return sock


def router(ctx: Context, endpoint: str, *, unbounded: bool = False) -> zmq.Socket[bytes]:
    """A ROUTER bound to ``endpoint``: peers address it, it answers each by routing id.

    Sends to a peer that is gone raise (``ROUTER_MANDATORY``) instead of vanishing;
    ``unbounded`` lifts the high-water marks.
    """
    sock = _socket(ctx, zmq.ROUTER, unbounded)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    sock.bind(endpoint)
    return sock


def dealer(ctx: Context, endpoint: str, identity: str, *, unbounded: bool = False) -> zmq.Socket[bytes]:
    """A DEALER connected to ``endpoint`` under the routing id ``identity``."""
    sock = _socket(ctx, zmq.DEALER, unbounded)
    sock.setsockopt(zmq.ROUTING_ID, identity.encode())
    sock.connect(endpoint)
    return sock

"""A thin, fast asyncio binding for ZeroMQ sockets: callbacks on receive, non-blocking sends.

zmq.asyncio allocates a future per receive; on the hot path we instead drain
the socket in the event loop's reader callback and hand each message to a
plain function.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
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


def runtime_dir() -> str:
    """A private directory for this kernel's ipc sockets; those of dead kernels are removed."""
    base = tempfile.gettempdir()
    for name in os.listdir(base):
        parts = name.split("-")
        if len(parts) == 3 and parts[0] == "kernel" and parts[1].isdigit() and not _alive(int(parts[1])):
            shutil.rmtree(os.path.join(base, name), ignore_errors=True)
    return tempfile.mkdtemp(prefix=f"kernel-{os.getpid()}-")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def ipc(run_dir: str, name: str) -> str:
    return f"ipc://{os.path.join(run_dir, name)}"

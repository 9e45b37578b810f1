"""A TCP relay on 127.0.0.1 between the kernel and a backing service, that a test can cut and restore.

``Relay(port).start()`` listens on a free port of its own and passes every connection on to
``127.0.0.1:<port>`` (PostgreSQL, Redis). ``cut()`` is the service going away: every connection
through the relay is reset and the listening socket closed, so new connections are refused (as
from a host whose server stopped). ``restore()`` listens on the same port again: the service is
back. The shared servers themselves are never touched, so other tests keep using them.

The relay runs its own event loop in a thread: the tests drive a ``kernel serve`` with blocking
HTTP calls, and the relay must keep moving bytes meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
_CHUNK = 65536


class Relay:
    """Forwards ``127.0.0.1:<port>`` (its own, free) to ``target_host:target_port``; can be cut and restored."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="relay", daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    # -- the test's side (any thread but the relay's) ---------------------------------------
    def start(self) -> Relay:
        self._thread.start()
        self._call(self._listen())
        return self

    def cut(self) -> None:
        """The service goes away: reset every connection, refuse new ones."""
        self._call(self._cut())

    def restore(self) -> None:
        """The service is back on the same address."""
        self._call(self._listen())

    def close(self) -> None:
        if self._thread.is_alive():
            self._call(self._cut())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> Relay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    # -- the relay's loop ------------------------------------------------------------------
    async def _listen(self) -> None:
        if self._server is not None:
            return
        deadline = time.monotonic() + 5
        while True:
            try:  # the same port as before (SO_REUSEADDR: connections it had may be in TIME_WAIT)
                self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)
                break
            except OSError:
                if not self.port or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _cut(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            _reset(writer)
        self._writers.clear()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if self._server is None:  # accepted just before the cut
            _reset(client_w)
            return
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            _reset(client_w)
            return
        if self._server is None:
            _reset(client_w)
            _reset(server_w)
            return
        self._writers.update((client_w, server_w))
        await asyncio.gather(self._pump(client_r, server_w), self._pump(server_r, client_w))
        for w in (client_w, server_w):
            self._writers.discard(w)
            w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(_CHUNK):
                writer.write(data)
                await writer.drain()
        except (OSError, RuntimeError):  # reset by the other side, or by cut()
            pass
        finally:
            if not writer.is_closing():
                with contextlib.suppress(OSError, RuntimeError):
                    writer.write_eof()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (``SO_LINGER`` 0), as a server that went away does, not a polite FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()

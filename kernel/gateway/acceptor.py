"""Taking connections off the gateways' shared listener, at most ``backend.gateway.maxConnections`` at once.

At the limit a gateway process stops calling ``accept``: new connections wait in the kernel's listen
backlog (the supervisor listens with 2048, capped by ``net.core.somaxconn``), where another gateway
process sharing the listener may take them, and are taken as soon as one of this process's
connections closes. Connections already open are not disturbed. When the backlog itself is full, the
operating system drops new connection attempts (the client's TCP retries them) — nothing is refused
with an answer, because nothing has been read yet.

Each accepted connection is served by ``serve(sock)`` in a task of its own; the slot is free again
when it returns.

A gateway being replaced (a rolling restart, ``Retire``) stops accepting and ``linger``s: its open
connections go on until they close (each server answers every request with ``Connection: close`` and
closes a connection idle for ``RETIRE_IDLE`` seconds, so clients leave between two requests) or its grace ends;
the connections it no longer takes wait in the shared backlog for the other gateways, or its successor.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import socket
import ssl
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger("kernel.gateway.http")

#: ``accept`` errors that say the process or the system is out of something: wait, then try again
_EXHAUSTED = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
#: seconds a retiring gateway keeps a connection that waits for its next request (each server closes it then)
RETIRE_IDLE = 1.0
#: file descriptors a gateway process needs besides its connections (ZeroMQ sockets, logs, modules)
FD_HEADROOM = 256


class Acceptor:
    """Accepts from ``listener`` while fewer than ``limit`` connections are open (see the module doc)."""

    def __init__(self, listener: socket.socket, limit: int, serve: Callable[[socket.socket], Awaitable[None]]) -> None:
        self._listener = listener
        self._slots = asyncio.Semaphore(limit)
        self._serve = serve
        self._tasks: set[asyncio.Task[None]] = set()
        self._warned = 0.0
        self.limit = limit

    @property
    def open(self) -> int:
        """Connections being served now."""
        return len(self._tasks)

    async def run(self) -> None:
        """Accept until cancelled."""
        loop = asyncio.get_running_loop()
        self._listener.setblocking(False)
        while True:
            await self._slots.acquire()
            try:
                conn, _ = await loop.sock_accept(self._listener)
            except OSError as exc:
                self._slots.release()
                if exc.errno in _EXHAUSTED:
                    self._warn(exc)
                    await asyncio.sleep(0.1)
                continue  # ECONNABORTED and the like: the client left before it was accepted
            except BaseException:
                self._slots.release()
                raise
            task = loop.create_task(self._connection(conn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def run_until(self, stop: asyncio.Event) -> None:
        """Accept until ``stop`` is set; an accept error that is not a shortage (which waits) is raised."""
        loop = asyncio.get_running_loop()
        accepting = loop.create_task(self.run())
        stopping = loop.create_task(stop.wait())
        try:
            await asyncio.wait([accepting, stopping], return_when=asyncio.FIRST_COMPLETED)
            if accepting.done():
                accepting.result()  # it never ends but by an error: raise it
        finally:
            accepting.cancel()
            stopping.cancel()

    async def _connection(self, conn: socket.socket) -> None:
        try:
            await self._serve(conn)
        except Exception:
            log.exception("a connection failed")
        finally:
            conn.close()  # a no-op when the server's transport already closed it
            self._slots.release()

    def _warn(self, exc: OSError) -> None:
        now = time.monotonic()
        if now - self._warned > 10:
            self._warned = now
            log.warning("cannot accept connections (%s): %d open; retrying", exc.strerror, self.open)

    async def linger(self, grace: float, retire: Callable[[], object]) -> None:
        """A retiring gateway: ``retire()`` the server's connections, then wait up to ``grace`` seconds for
        them to close (no-op without grace: the gateway stops)."""
        if grace <= 0:
            return
        retire()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace)

    async def close(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for the open connections to end, then cancel the rest."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)


async def connect(
    sock: socket.socket,
    protocol: Callable[[], asyncio.BaseProtocol],
    tls: ssl.SSLContext | None,
    handshake_timeout: float,
) -> asyncio.Transport | None:
    """An accepted socket as a transport to ``protocol()``, after the TLS handshake when given a context.

    None when the handshake failed or timed out, or the client left.
    """
    loop = asyncio.get_running_loop()
    try:
        if tls is None:
            transport, _ = await loop.connect_accepted_socket(protocol, sock)
        else:
            transport, _ = await loop.connect_accepted_socket(
                protocol, sock, ssl=tls, ssl_handshake_timeout=handshake_timeout
            )
    except OSError:
        return None
    return transport


def raise_open_file_limit(connections: int) -> None:
    """Raise this process's soft open-file limit to fit ``connections`` (never past the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + FD_HEADROOM
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        if new < wanted:
            log.warning(
                "backend.gateway.maxConnections is %d but the open-file limit is %d: accept will fail before it",
                connections,
                new,
            )

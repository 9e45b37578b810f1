"""The HTTP servers a gateway can run its app on: hypercorn (default) or uvicorn.

Both serve the listener the supervisor opened (``fd``), over TLS when given a context
(``kernel.gateway.tls``). Hypercorn speaks HTTP/1.1 and HTTP/2: over TLS by ALPN, and in the clear
(h2c) by prior knowledge or an ``Upgrade: h2c``; uvicorn speaks HTTP/1.1 only.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from typing import Any

from kernel.gateway.stream import AnswerBrokenOff
from kernel.transport.sockets import MAX_FRAME  # a WebSocket message travels to the worker as one frame

#: what each server offers by ALPN over TLS
ALPN = {"hypercorn": ("h2", "http/1.1"), "uvicorn": ("http/1.1",)}


async def serve_hypercorn(app: Any, fd: int, stop: asyncio.Event, tls: ssl.SSLContext | None = None) -> None:
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    class _Config(Config):
        """Hypercorn's config with a TLS context made by the kernel (hypercorn's own wants files)."""

        @property
        def ssl_enabled(self) -> bool:
            return tls is not None

        def create_ssl_context(self) -> ssl.SSLContext | None:
            return tls

    config = _Config()
    config.bind = [f"fd://{fd}"]  # the secure bind when ssl_enabled
    config.accesslog = None
    config.errorlog = logging.getLogger("kernel.gateway.http")
    config.errorlog.addFilter(BrokenOffFilter())
    config.graceful_timeout = 1.0
    config.websocket_max_message_size = MAX_FRAME
    await hypercorn_serve(app, config, shutdown_trigger=stop.wait)


async def serve_uvicorn(app: Any, fd: int, stop: asyncio.Event, tls: ssl.SSLContext | None = None) -> None:
    import uvicorn

    logging.getLogger("uvicorn.error").addFilter(BrokenOffFilter())

    config = uvicorn.Config(
        app, http="httptools", lifespan="off", access_log=False, log_level="warning", ws_max_size=MAX_FRAME
    )
    config.load()
    config.ssl = tls
    server = uvicorn.Server(config)
    # Hand uvicorn the inherited listener as a TCP socket: with ``fd=`` it treats it as a unix
    # socket and never sets TCP_NODELAY (Nagle + delayed ACK: ~44 ms per request).
    listener = socket.socket(fileno=fd)
    task = asyncio.get_running_loop().create_task(server._serve(sockets=[listener]))  # no signal handlers
    await stop.wait()
    server.should_exit = True
    await task


SERVERS = {"hypercorn": serve_hypercorn, "uvicorn": serve_uvicorn}


class BrokenOffFilter(logging.Filter):
    """The server's record of an answer the kernel broke off on purpose: one warning line, no traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, AnswerBrokenOff):
            record.msg, record.args = str(exc), None
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True

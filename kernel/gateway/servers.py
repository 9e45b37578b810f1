"""The HTTP servers a gateway can run its app on: hypercorn (default) or uvicorn."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

from kernel.transport.sockets import MAX_FRAME  # a WebSocket message travels to the worker as one frame


async def serve_hypercorn(app: Any, fd: int, stop: asyncio.Event) -> None:
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"fd://{fd}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("kernel.gateway.http")
    config.graceful_timeout = 1.0
    config.websocket_max_message_size = MAX_FRAME
    await hypercorn_serve(app, config, shutdown_trigger=stop.wait)


async def serve_uvicorn(app: Any, fd: int, stop: asyncio.Event) -> None:
    import uvicorn

    config = uvicorn.Config(
        app, http="httptools", lifespan="off", access_log=False, log_level="warning", ws_max_size=MAX_FRAME
    )
    server = uvicorn.Server(config)
    # Hand uvicorn the inherited listener as a TCP socket: with ``fd=`` it treats it as a unix
    # socket and never sets TCP_NODELAY (Nagle + delayed ACK: ~44 ms per request).
    listener = socket.socket(fileno=fd)
    task = asyncio.get_running_loop().create_task(server._serve(sockets=[listener]))  # no signal handlers
    await stop.wait()
    server.should_exit = True
    await task


SERVERS = {"hypercorn": serve_hypercorn, "uvicorn": serve_uvicorn}

"""The HTTP servers a gateway can run its app on: hypercorn (default) or uvicorn.

Both serve the listener the supervisor opened (``fd``), over TLS when given a context
(``kernel.gateway.tls``). Hypercorn speaks HTTP/1.1 and HTTP/2: over TLS by ALPN, and in the clear
(h2c) by prior knowledge or an ``Upgrade: h2c``; uvicorn speaks HTTP/1.1 only.

Either runs under the edge's limits (``backend.gateway``): the connection cap and the server's own
refusals in the error shape (``kernel.gateway.hypercorn_edge``, ``kernel.gateway.uvicorn_edge``,
``kernel.gateway.acceptor``), the URL and body limits around the app (``kernel.gateway.limits``).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from typing import Any

from kernel.gateway.acceptor import raise_open_file_limit
from kernel.gateway.limits import LimitsMiddleware
from kernel.gateway.stream import AnswerBrokenOff
from kernel.settings import GatewaySettings

#: what each server offers by ALPN over TLS
ALPN = {"hypercorn": ("h2", "http/1.1"), "uvicorn": ("http/1.1",)}
_DEFAULTS = GatewaySettings()


def _limited(app: Any, settings: GatewaySettings) -> Any:
    """The app under the limits every server shares (``kernel.gateway.limits``)."""
    return LimitsMiddleware(
        app,
        max_url_length=settings.max_url_length,
        max_header_size=settings.max_header_size,
        body_idle_timeout=settings.body_idle_timeout,
        body_timeout=settings.body_timeout,
    )


async def serve_hypercorn(
    app: Any,
    fd: int,
    stop: asyncio.Event,
    tls: ssl.SSLContext | None = None,
    settings: GatewaySettings = _DEFAULTS,
) -> None:
    from kernel.gateway import hypercorn_edge

    errorlog = logging.getLogger("kernel.gateway.http")
    errorlog.addFilter(BrokenOffFilter())
    raise_open_file_limit(settings.max_connections)
    listener = socket.socket(fileno=fd)
    await hypercorn_edge.serve(_limited(app, settings), listener, stop, tls, settings, errorlog)


async def serve_uvicorn(
    app: Any,
    fd: int,
    stop: asyncio.Event,
    tls: ssl.SSLContext | None = None,
    settings: GatewaySettings = _DEFAULTS,
) -> None:
    from kernel.gateway import uvicorn_edge

    logging.getLogger("uvicorn.error").addFilter(BrokenOffFilter())
    raise_open_file_limit(settings.max_connections)
    listener = socket.socket(fileno=fd)
    await uvicorn_edge.serve(_limited(app, settings), listener, stop, tls, settings)


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

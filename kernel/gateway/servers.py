"""The HTTP servers a gateway can run its app on: ``auto`` (the default), hypercorn or uvicorn.

Each serves the listener the supervisor opened (``fd``), over TLS when given a context
(``kernel.gateway.tls``). Hypercorn speaks HTTP/1.1 (h11, in Python) and HTTP/2: over TLS by ALPN,
and in the clear (h2c) by prior knowledge or an ``Upgrade: h2c``; uvicorn speaks HTTP/1.1 only
(httptools, in C). ``auto`` gives each connection to the one best for it: HTTP/1.1 to uvicorn's
protocol, HTTP/2 to hypercorn (``kernel.gateway.auto_edge``).

Either runs under the edge's limits (``backend.gateway``): the connection cap and the server's own
refusals in the error shape (``kernel.gateway.hypercorn_edge``, ``kernel.gateway.uvicorn_edge``,
``kernel.gateway.acceptor``), the URL, header and body limits are the app's outermost layer (``kernel.gateway.compose``).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import socket
import ssl
from collections.abc import Callable
from types import ModuleType
from typing import Any

from kernel.gateway.acceptor import raise_open_file_limit
from kernel.gateway.relay import AnswerBrokenOff
from kernel.settings import GatewaySettings

#: what each server offers by ALPN over TLS
ALPN = {"auto": ("h2", "http/1.1"), "hypercorn": ("h2", "http/1.1"), "uvicorn": ("http/1.1",)}
_DEFAULTS = GatewaySettings()


async def serve(
    server: str,
    app: Any,
    fd: int,
    stop: asyncio.Event,
    tls: ssl.SSLContext | None = None,
    settings: GatewaySettings = _DEFAULTS,
    linger: Callable[[], float] = lambda: 0.0,
) -> None:
    """Serve ``app`` with ``server`` (``backend.gateway.server``) on the listener ``fd`` until ``stop``; then,
    for a gateway being replaced, its open connections go on for ``linger()`` seconds at most."""
    for name in ("kernel.gateway.http", "uvicorn.error"):
        found = logging.getLogger(name)
        if not any(isinstance(f, BrokenOffFilter) for f in found.filters):
            found.addFilter(BrokenOffFilter())
    raise_open_file_limit(settings.max_connections)
    await _edge(server).serve(app, socket.socket(fileno=fd), stop, tls, settings, linger)


#: the module serving each server, imported when asked for (only ``auto`` and uvicorn load uvicorn)
_EDGES = {
    "auto": "kernel.gateway.auto_edge",
    "hypercorn": "kernel.gateway.hypercorn_edge",
    "uvicorn": "kernel.gateway.uvicorn_edge",
}


def _edge(server: str) -> ModuleType:
    return importlib.import_module(_EDGES[server])


class BrokenOffFilter(logging.Filter):
    """The server's record of an answer the kernel broke off on purpose: one warning line, no traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, AnswerBrokenOff):
            record.msg, record.args = str(exc), None
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True

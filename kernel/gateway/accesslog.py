"""One line per request on the ``kernel.access`` logger, written when the answer is done (``write``).

The message is the method and the path (without the query string: it may hold secrets), the
fields ``status``, ``bytes`` (of the body as sent, after compression), ``duration_ms``,
``plugin_id`` and ``principal`` (its type; both ``-`` outside the plugin mount or before the
dispatcher knew them) and ``request_id``, in the process's log format: in text
``GET /api/hello/hello status=200 bytes=27 duration_ms=1.3 plugin_id=hello principal=none request_id=…``. A request the client left before any answer is logged with status 499; one the edge
itself failed on, with the status the error maps to. A WebSocket gets its line when it ends,
``WEBSOCKET /path`` with status 101 once accepted (or its refusal's status).

The access log is switched by ``backend.accessLog.enabled`` alone: the logger is set to ``info``
so that ``backend.logging.level: warn`` quiets diagnostics, not the access log.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import time
from typing import Any

from starlette.types import Scope

from kernel.logs import LineFormatter
from kernel.scope_keys import PLUGIN, PRINCIPAL, REQUEST_ID

log = logging.getLogger("kernel.access")
CLIENT_CLOSED = 499


def prepare() -> None:
    """Make the access log ready in this process: its logger at ``info``, the record template taken."""
    log.setLevel(logging.INFO)
    template = log.makeRecord(log.name, logging.INFO, __file__, 0, "", (), None)
    _RECORD.update(template.__dict__)
    _STARTED[0] = template.created - template.relativeCreated / 1000  # logging's start, as it counts


@atexit.register
def _flush_at_exit() -> None:
    """The lines of the last ``FLUSH_DELAY`` seconds, when the process ends."""
    handler = _kernel_handler()
    if _pending and handler is not None:
        _flush(handler)


def write(scope: Scope, status: int, size: int, seconds: float) -> None:
    """The line of the request of ``scope``, answered with ``status`` and ``size`` body bytes in ``seconds``."""
    if not log.isEnabledFor(logging.INFO):
        return
    principal = scope.get(PRINCIPAL)
    fields = {
        "status": status,
        "bytes": size,
        "duration_ms": round(seconds * 1000, 2),
        "plugin_id": scope.get(PLUGIN, "-"),
        "principal": principal.type if principal is not None else "-",
        "request_id": scope.get(REQUEST_ID, "-"),
    }
    message = f"{scope['method'] if scope['type'] == 'http' else 'WEBSOCKET'} {_printable(scope['path'])}"
    handler = _kernel_handler()
    if handler is None:
        log.handle(_record(message, fields))
        return
    formatter = handler.formatter
    assert isinstance(formatter, LineFormatter)
    # the fields' names are known not to be secret, their values are numbers or checked ids:
    # only the message (the path) goes through the redactor
    line = formatter.render(log.name, "INFO", time.time(), _PID, formatter.redactor.text(message), fields, None)
    _pending.append(line + handler.terminator)
    if len(_pending) == 1:
        try:
            asyncio.get_running_loop().call_later(FLUSH_DELAY, _flush, handler)
        except RuntimeError:  # no event loop: write it now
            _flush(handler)


def _printable(path: str) -> str:
    """The path with control characters percent-encoded: a decoded ``%0A`` must not start a forged line."""
    if path.isprintable():
        return path
    return "".join(c if c.isprintable() else "".join(f"%{b:02X}" for b in c.encode()) for c in path)


_PID = os.getpid()
#: seconds a line waits for the ones after it: one write per batch, not per turn of the event loop (each
#: write wakes the supervisor, which relays it: per line, that cost more than making the line)
FLUSH_DELAY = 0.05
_pending: list[str] = []  # lines made in the last FLUSH_DELAY seconds, written together


def _flush(handler: logging.StreamHandler[Any]) -> None:
    data = "".join(_pending)
    _pending.clear()
    handler.acquire()
    try:
        handler.stream.write(data)
        handler.stream.flush()
    finally:
        handler.release()


def _kernel_handler() -> logging.StreamHandler[Any] | None:
    """The process's one handler when it is the kernel's and nothing else would see the line.

    Then the line is made from its parts as the formatter would make it, and the lines of one
    turn of the event loop are written at once: without a ``LogRecord``, the logging machinery
    and a write per line, a line costs a third of ``log.info``'s (the hot path's budget). Any
    other setup (a handler or filter added by someone) gets the record through ``log.handle``.
    """
    handlers = logging.root.handlers
    if len(handlers) != 1 or log.handlers or log.filters or not log.propagate:
        return None
    handler = handlers[0]
    if (
        type(handler) is not logging.StreamHandler
        or handler.filters
        or handler.level > logging.INFO
        or not isinstance(handler.formatter, LineFormatter)
    ):
        return None
    return handler


#: the attributes every access record shares (logger, level, process, thread...), taken once
_RECORD: dict[str, object] = {}
_STARTED = [0.0]


def _record(message: str, fields: dict[str, object]) -> logging.LogRecord:
    """A ``LogRecord`` as ``log.info`` makes it, from a template: no stack walk for the caller, no
    thread and process lookups (the same for every line): a third of the cost of a line."""
    record = logging.LogRecord.__new__(logging.LogRecord)
    attributes = record.__dict__
    attributes.update(_RECORD)
    now = time.time()
    attributes["created"] = now
    attributes["msecs"] = (now - int(now)) * 1000
    attributes["relativeCreated"] = (now - _STARTED[0]) * 1000
    attributes["msg"] = message
    attributes["fields"] = fields
    return record

"""Requests inside a worker: each ``RequestHead`` becomes a task running the plugin's ASGI app.

Streams are keyed by (gateway index, stream id): every gateway numbers its own.
A plugin exception becomes the documented error shape (or breaks off an answer
already started); the worker lives on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from kernel.errors import KernelError
from kernel.protocol import Credit, End, Message, RequestBody, RequestHead
from kernel.worker.streams import Send, Stream, error_response

log = logging.getLogger("kernel.worker")
PRINCIPAL_KEY = "kernel.principal"


class Dispatcher:
    """Runs the requests the gateways send to this worker."""

    def __init__(self, app: Any, plugin_id: str, root_path: str, *, dev: bool) -> None:
        self.app = app
        self.plugin_id = plugin_id
        self.root_path = root_path
        self.dev = dev
        self.streams: dict[tuple[int, int], Stream] = {}

    def on_message(self, index: int, msg: Message, frames: list[bytes], send: Send) -> None:
        """A stream message from gateway ``index``; ``send`` answers that gateway."""
        kind = type(msg)
        if kind is RequestHead:
            self._start(index, msg, send)  # type: ignore[arg-type]
            return
        stream = self.streams.get((index, msg.stream))  # type: ignore[union-attr]
        if stream is None:
            return
        if kind is RequestBody:
            stream.feed(frames[-1], msg.more)  # type: ignore[union-attr]
        elif kind is Credit:
            stream.grant(msg.chunks)  # type: ignore[union-attr]
        elif kind is End:
            stream.disconnect()

    def _start(self, index: int, head: RequestHead, send: Send) -> None:
        stream = Stream(head, send)
        key = (index, head.stream)
        self.streams[key] = stream
        stream.task = asyncio.get_running_loop().create_task(self._handle(key, stream))

    async def _handle(self, key: tuple[int, int], stream: Stream) -> None:
        head = stream.head
        try:
            await self.app(stream.scope(self.root_path, PRINCIPAL_KEY, self.app), stream.receive, stream.send)
            if not stream.started:
                raise RuntimeError("the handler returned without sending a response")
            if not stream.finished:
                await stream.send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            pass  # the gateway gave up on this request (client gone or deadline)
        except Exception as exc:  # plugin code may raise anything
            url = head.path + ("?" + head.query.decode("latin-1") if head.query else "")
            status, body = error_response(exc, head.method, url, self.dev)
            if status >= 500 and isinstance(exc, KernelError):  # raised on purpose: say it, no traceback
                log.warning("%s %s in plugin '%s': %s: %s", head.method, url, self.plugin_id, exc.name, exc)
            elif status >= 500:
                log.exception("%s %s failed in plugin '%s'", head.method, url, self.plugin_id)
            stream.fail(exc, status, body)
        finally:
            self.streams.pop(key, None)

    async def drain(self, grace: float) -> None:
        """Let in-flight requests finish for ``grace`` seconds, then cancel the rest."""
        deadline = time.monotonic() + grace
        while self.streams and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for stream in list(self.streams.values()):
            stream.disconnect()

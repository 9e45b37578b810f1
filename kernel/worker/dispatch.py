"""Requests inside a worker: each ``RequestHead`` becomes a task running the plugin's ASGI app.

A head marked ``websocket`` opens a WebSocket (``kernel.worker.websockets``) instead of a request.

Streams are keyed by (gateway index, stream id): every gateway numbers its own.
Each request's task carries its ``X-Request-Id`` (``kernel.logs.REQUEST_ID``), so every line
logged while it runs names the request.
A plugin exception becomes the documented error shape (or breaks off an answer
already started); the worker lives on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from starlette.websockets import WebSocketDisconnect

from kernel.errors import KernelError
from kernel.logs import REQUEST_ID, valid_request_id
from kernel.protocol import Credit, End, Message, RequestBody, RequestHead, WsClose, WsMessage
from kernel.scope_keys import PRINCIPAL
from kernel.worker.latency import LatencyWindow
from kernel.worker.streams import Send, Stream, error_response
from kernel.worker.websockets import WebSocketStream

log = logging.getLogger("kernel.worker")


class Dispatcher:
    """Runs the requests the gateways send to this worker."""

    def __init__(self, app: Any, plugin_id: str, root_path: str, *, dev: bool) -> None:
        self.app = app
        self.plugin_id = plugin_id
        self.root_path = root_path
        self.dev = dev
        self.streams: dict[tuple[int, int], Stream | WebSocketStream] = {}
        self.served = 0  # requests and WebSockets started
        self.latency = LatencyWindow()  # handler times, for the heartbeats

    def on_message(self, index: int, msg: Message, frames: list[bytes], send: Send) -> None:
        """A stream message from gateway ``index``; ``send`` answers that gateway."""
        kind = type(msg)
        if kind is RequestHead:
            self._start(index, msg, send)  # type: ignore[arg-type]
            return
        stream = self.streams.get((index, msg.stream))  # type: ignore[union-attr]
        if stream is None:
            return
        if kind is RequestBody and type(stream) is Stream:
            stream.feed(frames[-1], msg.more)  # type: ignore[union-attr]
        elif kind is Credit:
            stream.grant(msg.chunks)  # type: ignore[union-attr]
        elif kind is End:
            stream.disconnect()
        elif kind is WsMessage and type(stream) is WebSocketStream:
            stream.feed_message(frames[-1], msg.text)  # type: ignore[union-attr]
        elif kind is WsClose and type(stream) is WebSocketStream:
            stream.feed_close(msg.code, msg.reason)  # type: ignore[union-attr]

    def _start(self, index: int, head: RequestHead, send: Send) -> None:
        self.served += 1
        stream = WebSocketStream(head, send) if head.websocket else Stream(head, send)
        key = (index, head.stream)
        self.streams[key] = stream
        stream.task = asyncio.get_running_loop().create_task(self._handle(key, stream))

    async def _handle(self, key: tuple[int, int], stream: Stream | WebSocketStream) -> None:
        head = stream.head
        start = time.perf_counter()
        for name, value in head.headers:  # this task's own context: no reset needed
            if name == b"x-request-id":
                REQUEST_ID.set(valid_request_id(value))
                break
        try:
            await self.app(stream.scope(self.root_path, PRINCIPAL, self.app), stream.receive, stream.send)
            await stream.finish()
        except asyncio.CancelledError:
            pass  # the gateway gave up on this request (client gone or deadline)
        except Exception as exc:  # plugin code may raise anything
            if isinstance(exc, WebSocketDisconnect) and isinstance(stream, WebSocketStream) and stream.closed:
                return  # the handler wrote to a socket already closed: the usual end of a socket
            url = head.path + ("?" + head.query.decode("latin-1") if head.query else "")
            status, body = error_response(exc, head.method, url, self.dev)
            if isinstance(stream, WebSocketStream) and stream.accepted and status < 500:
                status = 500  # the socket is open: a handler that raised is a server error (closes 1011)
            if status >= 500 and isinstance(exc, KernelError):  # raised on purpose: say it, no traceback
                log.warning("%s %s in plugin '%s': %s: %s", head.method, url, self.plugin_id, exc.name, exc)
            elif status >= 500:
                log.exception("%s %s failed in plugin '%s'", head.method, url, self.plugin_id)
            stream.fail(exc, status, body)
        finally:
            self.streams.pop(key, None)
            if not head.websocket:
                self.latency.add(time.perf_counter() - start)

    async def drain(self, grace: float) -> None:
        """Let in-flight requests finish for ``grace`` seconds, then cancel the rest."""
        deadline = time.monotonic() + grace
        for stream in list(self.streams.values()):
            if isinstance(stream, WebSocketStream):
                stream.going_away()  # a socket would hold the worker for the whole grace
        while self.streams and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for stream in list(self.streams.values()):
            stream.disconnect()

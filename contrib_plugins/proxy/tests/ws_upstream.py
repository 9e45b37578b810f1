"""A WebSocket upstream for the proxy's tests: an aiohttp server on 127.0.0.1, on a loop in a thread of its own.

Every path is a WebSocket that records its handshake (path, headers, the subprotocol it chose from
``chat.v1``/``chat.v2``) and echoes text and bytes, except:

- text ``close``: it closes with 4000 ``bye``; text ``die``: it drops the connection (a TCP reset,
  no close handshake);
- a path ending in ``/refuse``: the handshake is answered 403 (no WebSocket);
- a path ending in ``/flood``: it sends ``0`` .. ``n-1`` (``?n=``) as fast as the proxy takes them, then
  closes with 1000.

``closes`` holds, by path, the code and reason of every close a socket got from the proxy.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from typing import Any

from aiohttp import WSMsgType, web

PROTOCOLS = ("chat.v1", "chat.v2")


class WsUpstream:
    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.handshakes: list[dict[str, Any]] = []
        self.closes: dict[str, tuple[int, str]] = {}
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> WsUpstream:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.tls).start()
        self.port = int(self._runner.addresses[0][1])

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path.endswith("/refuse"):
            return web.Response(status=403, text="no sockets here")
        ws = web.WebSocketResponse(protocols=PROTOCOLS, max_msg_size=0)
        await ws.prepare(request)
        self.handshakes.append(
            {
                "path": request.path_qs,
                "headers": [[k.lower(), v] for k, v in request.headers.items()],
                "protocol": ws.ws_protocol,
            }
        )
        if request.path.endswith("/flood"):
            for i in range(int(request.query.get("n", "100"))):
                await ws.send_str(str(i))
            await ws.close()
            return ws
        while True:
            msg = await ws.receive()
            if msg.type is WSMsgType.CLOSE:
                self.closes[request.path] = (msg.data, msg.extra or "")
                break
            if msg.type is not WSMsgType.TEXT and msg.type is not WSMsgType.BINARY:
                break
            if msg.data == "close":
                await ws.close(code=4000, message=b"bye")
                break
            if msg.data == "die":
                assert request.transport is not None
                request.transport.abort()
                break
            if msg.type is WSMsgType.TEXT:
                await ws.send_str(msg.data)
            else:
                await ws.send_bytes(msg.data)
        return ws

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def header(handshake: dict[str, Any], name: str) -> list[str]:
    """Values of header ``name`` in a recorded handshake."""
    return [v for k, v in handshake["headers"] if k == name]

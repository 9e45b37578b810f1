"""One WebSocket through the proxy: the upstream's socket opened first, then the caller's accepted, then a relay.

The gateway has checked the caller's credentials and the auth policies on the upgrade, and
``ProxyApp`` the endpoint (``ws: true``) and the credentials policy. ``proxy_websocket`` then opens
the upstream's socket (``ws://`` or ``wss://`` for an ``http://`` or ``https://`` target) with what
an HTTP request would get: the path rewritten, the headers filtered, ``X-Forwarded-*`` set, TLS
options, failover and retries (``Pool.connect_ws``), and the subprotocols the caller offered. Only
once the upstream accepted is the caller's socket accepted, with the subprotocol the upstream chose;
an upstream that cannot be reached or refuses the handshake is an error raised before accepting,
which the worker turns into the HTTP answer to the caller's upgrade (502, 504, in the error shape).

Then text and binary messages pass both ways, each direction reading its next message only once
the previous one was handed to the other side (back-pressure: the kernel's credit towards the
caller, the TCP connection towards the upstream). Close codes and reasons pass both ways, except:

- the upstream went away without a close handshake (connection lost, broken frames): the caller's
  socket is closed with **1014** (bad gateway, RFC 6455's registry: a gateway got an invalid answer
  from its upstream), leaving 1011 to mean the plugin itself failed;
- a code that may not be sent in a close frame (RFC 6455 7.4.1): no code (1005) goes on as 1000,
  an abnormal end (1006: hypercorn reports every caller's close this way) as 1001 (going away).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final, Literal

import aiohttp
from starlette.websockets import WebSocketDisconnect

from kernel.api import Logger

from .config import Endpoint
from .headers import upstream_headers
from .upstream import Pool

__all__ = ["BAD_GATEWAY", "GOING_AWAY", "NORMAL", "proxy_websocket", "sendable_code"]

NORMAL: Final = 1000
GOING_AWAY: Final = 1001
#: the upstream's socket ended without a close handshake (RFC 6455 registry: "Bad Gateway")
BAD_GATEWAY: Final = 1014
_NO_CODE: Final = 1005
#: close codes that only report an end locally, never sent in a close frame
_LOCAL_ONLY: Final = frozenset({1004, 1005, 1006, 1015})

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Upstream = aiohttp.ClientWebSocketResponse[Literal[True]]


def sendable_code(code: int | None) -> int:
    """``code`` when it may go out in a close frame; no code as 1000, an abnormal end as 1001."""
    if code is None or code in (0, _NO_CODE):
        return NORMAL
    if code in _LOCAL_ONLY or not NORMAL <= code <= 4999:
        return GOING_AWAY
    return code


def _reason(text: str | None) -> str:
    """A close reason fits in a control frame: at most 123 bytes of UTF-8."""
    return (text or "").encode()[:123].decode(errors="ignore")


async def proxy_websocket(
    endpoint: Endpoint, pool: Pool, path: str, scope: Scope, receive: Receive, send: Send, log: Logger
) -> None:
    """Open the upstream's socket, accept the caller's, relay until either side closes (see the module doc)."""
    caller = [(n, v) for n, v in scope["headers"] if not n.lower().startswith(b"sec-websocket-")]
    client = scope.get("client")
    headers = upstream_headers(
        caller,
        allow=endpoint.request_allow,
        configured=endpoint.headers,
        change_origin=endpoint.change_origin,
        streamed=False,
        client=client[0] if client else None,
        scheme="https" if scope.get("scheme") in ("wss", "https") else "http",
    )
    offered: list[str] = list(scope.get("subprotocols") or [])
    if (await receive())["type"] != "websocket.connect":  # the caller gave up already
        return
    upstream: Upstream = await pool.connect_ws(path, scope["query_string"], headers, offered)
    try:
        await send({"type": "websocket.accept", "subprotocol": upstream.protocol})
        await _Relay(endpoint, upstream, receive, send, log).run()
    finally:
        if not upstream.closed:
            await upstream.close(code=GOING_AWAY)


class _Relay:
    """The two directions of one proxied socket."""

    def __init__(self, endpoint: Endpoint, upstream: Upstream, receive: Receive, send: Send, log: Logger) -> None:
        self.endpoint = endpoint
        self.upstream = upstream
        self.receive = receive
        self.send = send
        self.log = log
        self.caller_left = False  # the caller closed: the upstream's socket is being closed by _from_caller

    async def run(self) -> None:
        """Relay until a close; the caller's side runs in a task of its own, the upstream's here."""
        from_caller = asyncio.get_running_loop().create_task(self._from_caller())
        try:
            caller_left = await self._from_upstream()
            if caller_left:
                await from_caller  # it is closing the upstream's socket: let it finish the handshake
        finally:
            if not from_caller.done():
                from_caller.cancel()
                await asyncio.gather(from_caller, return_exceptions=True)

    async def _from_caller(self) -> None:
        """The caller's messages to the upstream; the caller's close closes the upstream's socket."""
        while True:
            message = await self.receive()
            kind = message["type"]
            if kind == "websocket.disconnect":
                self.caller_left = True
                code = sendable_code(message.get("code"))
                reason = _reason(message.get("reason"))
                await self.upstream.close(code=code, message=reason.encode())
                return
            if kind != "websocket.receive":
                continue
            try:
                text = message.get("text")
                if text is not None:
                    await self.upstream.send_str(text)
                else:
                    await self.upstream.send_bytes(message.get("bytes") or b"")
            except (aiohttp.ClientError, ConnectionError, RuntimeError):
                return  # the upstream's socket is gone: _from_upstream sees it and closes the caller's

    async def _from_upstream(self) -> bool:
        """The upstream's messages to the caller, until a close; True when the caller left first."""
        up = self.upstream
        while True:
            msg = await up.receive()
            kind = msg.type
            if self.caller_left and kind in (aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                return True  # _from_caller is closing the upstream's socket
            try:
                if kind is aiohttp.WSMsgType.TEXT:
                    await self.send({"type": "websocket.send", "text": msg.data})
                    continue
                if kind is aiohttp.WSMsgType.BINARY:
                    await self.send({"type": "websocket.send", "bytes": msg.data})
                    continue
            except WebSocketDisconnect:  # the caller closed: _from_caller reads it and closes the upstream's
                return True
            if kind is aiohttp.WSMsgType.CLOSE:
                code, reason = sendable_code(msg.data), _reason(msg.extra)
                await self.send({"type": "websocket.close", "code": code, "reason": reason})
                await up.close(code=code)  # completes the upstream's close handshake
                return False
            # CLOSED or ERROR: the connection was lost, or the upstream broke the protocol
            error = f"{type(msg.data).__name__}: {msg.data}" if kind is aiohttp.WSMsgType.ERROR else "connection lost"
            self.log.warning(
                "proxy upstream WebSocket ended without a close handshake",
                endpoint=self.endpoint.prefix,
                error=error,
                close_code=up.close_code,
            )
            reason = f"The upstream of proxy endpoint '{self.endpoint.prefix}' went away"
            await self.send({"type": "websocket.close", "code": BAD_GATEWAY, "reason": _reason(reason)})
            return False

"""``X-Request-Id``: the client's (when valid) or a new one, for the worker, the logs and the answer.

A valid id (``kernel.logs.valid_request_id``: 1 to 200 of ``A-Za-z0-9._:+/=@-``) is kept, anything
else is replaced by a new one (32 random hex digits). The request goes on with exactly one ``x-request-id`` header (so
the worker's task logs under it), ``scope["kernel.request_id"]`` and ``kernel.logs.REQUEST_ID``
hold it in the gateway, and the answer carries it back (unless the plugin set its own).
"""

from __future__ import annotations

import os

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kernel.logs import REQUEST_ID, valid_request_id

HEADER = b"x-request-id"
SCOPE_KEY = "kernel.request_id"
_OTHER_STARTS = ("websocket.http.response.start", "websocket.accept")


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        rid = None
        given = False
        for name, value in headers:
            if name == HEADER:
                rid, given = valid_request_id(value), True
                break
        if rid is None:
            rid = os.urandom(16).hex()  # 128 random bits, as a W3C trace id: 32 hex digits
            kept = [h for h in headers if h[0] != HEADER] if given else headers
            scope["headers"] = [*kept, (HEADER, rid.encode())]
        scope[SCOPE_KEY] = rid
        raw = rid.encode()

        async def send_with_id(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.start" or kind in _OTHER_STARTS:
                own = message.get("headers") or []
                for name, _ in own:  # ASGI header names are lowercase
                    if name == HEADER:
                        break
                else:
                    message = {**message, "headers": [*own, (HEADER, raw)]}
            await send(message)

        token = REQUEST_ID.set(rid)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)

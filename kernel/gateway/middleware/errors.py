"""Outermost middleware: any error before the response starts becomes the documented JSON shape.

For a WebSocket, an error before the handshake is answered refuses it with that shape (the
ASGI denial response), or, on a server without denial responses, closes it (1008 or 1011).
"""

from __future__ import annotations

import json
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kernel import errors, framework_errors

log = logging.getLogger("kernel.gateway")


def request_url(scope: Scope) -> str:
    qs: bytes = scope.get("query_string", b"")
    path: str = scope.get("path", "")
    return path + ("?" + qs.decode("latin-1") if qs else "")


async def send_error(
    send: Send,
    scope: Scope,
    name: str,
    message: str,
    *,
    status: int | None = None,
    stack: str | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = errors.error_body(name, message, scope.get("method", "GET"), request_url(scope), status=status, stack=stack)
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": body["response"]["statusCode"],
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


async def deny_websocket(
    scope: Scope, send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    """Refuse the handshake with an HTTP answer, where the server can send one (else close it)."""
    if "websocket.http.response" in scope.get("extensions", {}):
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008 if status < 500 else 1011})


def error_answer(scope: Scope, exc: BaseException, *, dev: bool) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, headers and JSON body of the error shape for ``exc`` (a plain exception says no more in production)."""
    name, status, message = framework_errors.describe(exc)
    if status >= 500 and not isinstance(exc, errors.KernelError) and not dev:
        message = "Internal error"  # a plain exception says no more in production
    stack = errors.format_stack(exc) if dev else None
    body = errors.error_body(name, message, scope.get("method", "GET"), request_url(scope), status=status, stack=stack)
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    headers += errors.retry_after_header(exc) + framework_errors.own_headers(exc)
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    return status, headers, payload


class ErrorMiddleware:
    def __init__(self, app: ASGIApp, *, dev: bool = False) -> None:
        self.app = app
        self.dev = dev

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if started:
                raise
            if not isinstance(exc, errors.KernelError) and framework_errors.describe(exc)[1] >= 500:
                log.exception("gateway error on %s %s", scope.get("method"), request_url(scope))
            status, headers, payload = error_answer(scope, exc, dev=self.dev)
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": payload})

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """An error before the handshake is answered refuses it, in the same JSON shape where the server can."""
        answered = False

        async def tracking_send(message: Message) -> None:
            nonlocal answered
            answered = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if answered:
                raise
            if not isinstance(exc, errors.KernelError):
                log.exception("gateway error on WebSocket %s", request_url(scope))
            await deny_websocket(scope, send, *error_answer(scope, exc, dev=self.dev))

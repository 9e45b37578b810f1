"""Outermost middleware: any error before the response starts becomes the documented JSON shape."""

from __future__ import annotations

import json
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kernel import errors

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


class ErrorMiddleware:
    def __init__(self, app: ASGIApp, *, dev: bool = False) -> None:
        self.app = app
        self.dev = dev

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
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
            name, status = errors.describe(exc)
            if status >= 500 and not isinstance(exc, errors.KernelError):
                log.exception("gateway error on %s %s", scope.get("method"), request_url(scope))
            message = str(exc) if isinstance(exc, errors.KernelError) or self.dev else "Internal error"
            extra: list[tuple[bytes, bytes]] = []
            if status == 401:
                extra.append((b"www-authenticate", b"Bearer"))
            await send_error(
                send,
                scope,
                name,
                message,
                status=status,
                stack=errors.format_stack(exc) if self.dev else None,
                headers=extra,
            )

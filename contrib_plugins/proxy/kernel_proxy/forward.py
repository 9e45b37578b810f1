"""The proxy's ASGI app: one request in, passed on to its endpoint's upstream, the answer streamed back.

Checks first, in this order, before any upstream call: an endpoint matches the path (else 404),
the method is allowed (else 405), and the caller has credentials unless the endpoint is open (the
gateway already refused anonymous callers; this holds even if an open endpoint's auth policy
covers a closed endpoint below it). A WebSocket gets the same checks (its handshake is a GET),
and one more: its endpoint has ``ws: true`` (else 404, as for a path with no WebSocket route);
then ``kernel_proxy.websocket`` proxies it. Then both bodies stream: the caller's body goes upstream as
the worker receives it, the answer comes back chunk by chunk as the upstream sends it (an event
stream's head goes out at once, each event as it arrives; a small answer with a Content-Length of
at most 64 KiB is read whole and goes out with its head), with bounded memory: each side waits
for the other (flow control of the worker's stream, aiohttp's read buffer). Nothing is buffered,
decompressed or compressed.

An upstream failure before the answer's head is a kernel error (502, 504, see ``upstream``); after
it, the answer is broken off (the caller sees an incomplete body), never silently truncated.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Final

import aiohttp
from starlette.exceptions import HTTPException

from kernel.api import (
    AuthenticationError,
    BadGatewayError,
    GatewayTimeoutError,
    Logger,
    NotFoundError,
    principal_of,
)

from .config import Endpoint
from .headers import downstream_headers, upstream_headers
from .rewrite import default_rewrite
from .table import EndpointTable
from .upstream import Pool, RequestBody
from .websocket import proxy_websocket

__all__ = ["WHOLE_BODY", "ProxyApp", "upstream_path"]

Scope = dict[str, Any]
#: an answer announcing at most this many bytes is read whole, then sent with its head (one message)
WHOLE_BODY: Final = 64 * 1024


def upstream_path(endpoint: Endpoint, scope: Scope, route_path: str) -> str:
    """The path to append to the target's: ``pathRewrite`` on the full path, or the default cut."""
    if endpoint.rewrite is not None:
        return endpoint.rewrite.apply(_raw_path(scope))
    rest = route_path[len(endpoint.prefix) :] if endpoint.prefix != "/" else route_path
    return default_rewrite(rest)


class ProxyApp:
    """Serves ``/<route>/...`` of every endpoint in ``table`` (the plugin router's fallback app)."""

    def __init__(self, table: EndpointTable, logger: Logger) -> None:
        self.table = table
        self._log = logger

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await self.websocket(scope, receive, send)
        elif scope["type"] == "http":
            await self.http(scope, receive, send)

    async def websocket(self, scope: Scope, receive: Any, send: Any) -> None:
        """A WebSocket to an endpoint with ``ws: true``: refused before accepting, or proxied until closed."""
        path = _route_path(scope)
        endpoint, pool = self._checked(scope, path, "GET")
        if not endpoint.ws:
            raise NotFoundError(
                f"Proxy endpoint '{endpoint.prefix}' does not proxy WebSockets (its config needs 'ws: true')"
            )
        pool.acquire()  # an open socket counts as a request in flight (maxConcurrentRequests)
        try:
            await proxy_websocket(
                endpoint,
                pool,
                upstream_path(endpoint, scope, _route_path(scope, raw=True)),
                scope,
                receive,
                send,
                self._log,
            )
        finally:
            pool.release()

    def _checked(self, scope: Scope, path: str, method: str) -> tuple[Endpoint, Pool]:
        """The endpoint of ``path`` and its pool, once the method and the caller's credentials are checked."""
        found = self.table.match(path)
        if found is None:
            raise NotFoundError(f"No proxy endpoint for '{path}'")
        endpoint, pool = found
        if endpoint.allowed_methods is not None and method not in endpoint.allowed_methods:
            allowed = ", ".join(sorted(endpoint.allowed_methods))
            raise HTTPException(
                405, f"Method {method} is not allowed on proxy endpoint '{endpoint.prefix}' ({allowed})"
            )
        if not endpoint.open and principal_of(scope).type == "none":
            raise AuthenticationError("Missing credentials")
        return endpoint, pool

    async def http(self, scope: Scope, receive: Any, send: Any) -> None:
        path = _route_path(scope)
        method: str = scope["method"]
        endpoint, pool = self._checked(scope, path, method)
        body = RequestBody(await receive(), receive)
        client = scope.get("client")
        headers = upstream_headers(
            scope["headers"],
            allow=endpoint.request_allow,
            configured=endpoint.headers,
            change_origin=endpoint.change_origin,
            streamed=body.streamed,
            client=client[0] if client else None,
            scheme=scope.get("scheme", "http"),
        )
        pool.acquire()
        try:
            resp = await pool.open(
                method,
                upstream_path(endpoint, scope, _route_path(scope, raw=True)),
                scope["query_string"],
                headers,
                body,
            )
            try:
                await self._relay(endpoint, pool, resp, send)
            finally:
                resp.release()
        except (BadGatewayError, GatewayTimeoutError) as exc:
            upstream_error(endpoint.prefix, "timeout" if isinstance(exc, GatewayTimeoutError) else "unreachable")
            raise
        finally:
            pool.release()

    async def _relay(self, endpoint: Endpoint, pool: Pool, resp: aiohttp.ClientResponse, send: Any) -> None:
        headers = downstream_headers(resp.raw_headers, allow=endpoint.response_allow)
        start = {"type": "http.response.start", "status": resp.status, "headers": headers}
        try:
            length = resp.content_length
            if length is not None and length <= WHOLE_BODY and resp.content_type != "text/event-stream":
                body = await resp.read()  # small: it goes out with the head, in one message
                await send(start)
                await send({"type": "http.response.body", "body": body, "more_body": False})
                return
            await send(start)
            if resp.content_type == "text/event-stream":
                await send({"type": "http.response.body", "body": b"", "more_body": True})  # the head, now
            async for chunk in resp.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except aiohttp.ServerTimeoutError:
            self._log.warning("proxy upstream went silent mid-answer", endpoint=endpoint.prefix, url=str(resp.url))
            raise GatewayTimeoutError(
                f"The upstream of proxy endpoint '{endpoint.prefix}' sent nothing for {endpoint.read_timeout:g}s"
            ) from None
        except aiohttp.ClientError as exc:
            self._log.warning(
                "proxy upstream broke off its answer",
                endpoint=endpoint.prefix,
                url=str(resp.url),
                error=f"{type(exc).__name__}: {exc}",
            )
            raise BadGatewayError(f"The upstream of proxy endpoint '{endpoint.prefix}' broke off its answer") from None
        await send({"type": "http.response.body", "body": b"", "more_body": False})


@cache
def _upstream_errors() -> Any:
    """``kernel_proxy_upstream_errors_total``: in the kernel's metrics, summed over the proxy's workers."""
    from prometheus_client import Counter

    return Counter(
        "kernel_proxy_upstream_errors",
        "Proxy requests whose upstream could not be reached, broke off or went silent, by endpoint and kind",
        ["plugin_id", "endpoint", "kind"],
    )


def upstream_error(endpoint: str, kind: str) -> None:
    _upstream_errors().labels("proxy", endpoint, kind).inc()


def _route_path(scope: Scope, *, raw: bool = False) -> str:
    """The request path below the plugin's mount (``/frobs/list`` of ``/api/proxy/frobs/list``).

    Decoded (to match routes), or ``raw``: percent-encoded as the client sent it (to go upstream, so
    an encoded ``/`` in a segment stays one).
    """
    path = _raw_path(scope) if raw else scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path or "/"


def _raw_path(scope: Scope) -> str:
    raw: bytes | None = scope.get("raw_path")
    return raw.decode("latin-1") if raw else scope["path"]

"""``/api/<pluginId>/<rest>``: authenticate, pick a worker, stream the request and its answer."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import Receive, Scope, Send

from kernel.errors import (
    GatewayTimeoutError,
    InputError,
    NotFoundError,
    PayloadTooLargeError,
    ServiceUnavailableError,
)
from kernel.gateway.auth import Authenticator
from kernel.gateway.pool import GatewayStream, WorkerGone, WorkerLink, WorkerPool
from kernel.protocol import Credit, End, RequestBody, RequestHead, encode


class ApiDispatcher:
    """The ASGI app serving everything under the plugin mount."""

    def __init__(
        self,
        pool: WorkerPool,
        auth: Authenticator,
        *,
        mount: str,
        timeout: float,
        max_body: int,
    ) -> None:
        self.pool = pool
        self.auth = auth
        self.prefix = mount.rstrip("/") + "/"
        self.timeout = timeout
        self.max_body = max_body
        self.inflight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        plugin_id, _sep, rest = path[len(self.prefix) :].partition("/")
        rest = "/" + rest
        if "/." in rest and _has_dot_segment(rest):
            # "/open/../private" would pass the policy of "/open" and be resolved by the plugin
            raise InputError("Request paths must not contain '.' or '..' segments")
        if not self.pool.accepting:
            raise ServiceUnavailableError(
                "The server is shutting down" if self.pool.table_seen else "The server is starting"
            )
        route = self.pool.plugins.get(plugin_id)
        if route is None:
            raise NotFoundError(f"No plugin with id '{plugin_id}'")
        worker = route.pick()
        if worker is None:  # before auth: a plugin never started has no known policies
            raise ServiceUnavailableError(f"Plugin '{plugin_id}' has no ready worker ({route.reason or route.state})")
        headers = scope["headers"]
        principal = self.auth.authenticate(plugin_id, route.policies, rest, headers)
        declared = _content_length(headers)
        if declared is not None and declared > self.max_body:
            raise PayloadTooLargeError(f"Request body of {declared} bytes is over the limit of {self.max_body}")
        first = await receive()
        body = first.get("body", b"")
        more = first.get("more_body", False)
        if len(body) > self.max_body:
            raise PayloadTooLargeError(f"Request body is over the limit of {self.max_body} bytes")
        client = scope.get("client")

        def head(sid: int) -> bytes:
            return encode(
                RequestHead(
                    sid,
                    scope["method"],
                    path,
                    scope["query_string"],
                    headers,
                    tuple(client) if client else None,
                    scope["scheme"],
                    principal,
                    body,
                    more,
                    self.prefix + plugin_id,
                    scope["http_version"],
                )
            )

        pool = self.pool
        try:
            stream = pool.open(worker, head)
        except WorkerGone as exc:
            raise ServiceUnavailableError(str(exc)) from exc
        self.inflight += 1
        upload = None
        try:
            if more:
                upload = asyncio.get_running_loop().create_task(self._upload(stream, worker, receive, len(body)))
            # a timer, not wait_for: no extra task per request
            timer = asyncio.get_running_loop().call_later(self.timeout, _expire, stream, plugin_id, self.timeout)
            try:
                rhead = await stream.head
            except WorkerGone as exc:
                raise ServiceUnavailableError(str(exc)) from None
            finally:
                timer.cancel()
            await send({"type": "http.response.start", "status": rhead.status, "headers": rhead.headers})
            await send({"type": "http.response.body", "body": rhead.body, "more_body": rhead.more_body})
            more_out = rhead.more_body
            if more_out and upload is None:  # a streamed answer: stop it if the client goes away
                upload = asyncio.get_running_loop().create_task(self._watch_disconnect(stream, receive))
            while more_out:
                if stream.failure is not None:  # client gone, worker gone, idle timeout
                    raise stream.failure
                data, more_out = stream.chunks.popleft() if stream.chunks else await stream.next_chunk(self.timeout)
                await send({"type": "http.response.body", "body": data, "more_body": more_out})
                credit = stream.acker.consumed(more_out)
                if credit:
                    pool.send(worker, encode(Credit(stream.id, credit)))
        except ClientGone:
            _abandon(pool, stream, worker)  # nobody to answer: just stop the worker's handler
        except BaseException:
            _abandon(pool, stream, worker)
            raise
        finally:
            self.inflight -= 1
            pool.close_stream(stream)
            if upload is not None and not upload.done():
                upload.cancel()

    async def _upload(self, stream: GatewayStream, worker: WorkerLink, receive: Receive, seen: int) -> None:
        """Forward request body chunks as the worker grants credit; any failure fails the stream."""
        try:
            await self._forward_body(stream, worker, receive, seen)
        except Exception as exc:  # worker gone, stream already failed: the request side reports it
            if stream.failure is None:
                stream.fail(exc)

    async def _forward_body(self, stream: GatewayStream, worker: WorkerLink, receive: Receive, seen: int) -> None:
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                stream.fail(ClientGone("the client closed the connection during the upload"))
                return
            data = message.get("body", b"")
            more = message.get("more_body", False)
            seen += len(data)
            if seen > self.max_body:
                exc = PayloadTooLargeError(f"Request body is over the limit of {self.max_body} bytes")
                _abandon(self.pool, stream, worker)
                stream.fail(exc)  # the waiting request answers 413
                return
            await stream.take_credit()
            self.pool.send(worker, encode(RequestBody(stream.id, more)), data)
        await self._watch_disconnect(stream, receive)

    async def _watch_disconnect(self, stream: GatewayStream, receive: Receive) -> None:
        """Once the request body is in, the next ASGI message can only be the client leaving."""
        while (await receive())["type"] != "http.disconnect":
            pass
        stream.fail(ClientGone("the client closed the connection"))


def _has_dot_segment(path: str) -> bool:
    return any(part in (".", "..") for part in path.split("/"))


class ClientGone(Exception):
    """The client disconnected while its answer was streaming."""


def _expire(stream: GatewayStream, plugin_id: str, timeout: float) -> None:
    stream.fail(GatewayTimeoutError(f"Plugin '{plugin_id}' did not answer within {timeout:g}s"))


def _abandon(pool: WorkerPool, stream: GatewayStream, worker: WorkerLink) -> None:
    try:
        pool.send(worker, encode(End(stream.id)))
    except WorkerGone:
        pass


def _content_length(headers: Any) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                raise InputError("Invalid Content-Length header") from None
    return None

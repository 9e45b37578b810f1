"""One WebSocket on its way through a worker: the gateway's side.

The dispatcher (``kernel.gateway.dispatcher``) has checked the path, the plugin
and the credentials, and sent the handshake to a worker. The socket waits for
the plugin's answer (at most the request timeout): ``WsAccept`` accepts the
client's connection; a ``ResponseHead`` or a ``WsClose`` refuses it with an
HTTP answer. Then messages flow both ways, each direction with credit like
body chunks, until either side closes. A worker that dies or is replaced
closes the client's socket with 1012 (service restart: reconnect); a gateway
that stops closes it with 1001 (going away).
"""

from __future__ import annotations

import asyncio
from collections import deque

from starlette.types import Receive, Scope, Send

from kernel.errors import NotAllowedError
from kernel.flow import Acker
from kernel.gateway.middleware.errors import deny_websocket
from kernel.gateway.relay import ClientGone, SendToWorker, WorkerBound, WorkerGone, WorkerLink
from kernel.protocol import Credit, Error, Message, ResponseHead, WsAccept, WsClose, WsMessage, encode

GOING_AWAY = 1001
SERVICE_RESTART = 1012


class GatewayStopping(Exception):
    """This gateway is shutting down."""


class GatewaySocket(WorkerBound):
    """One client WebSocket bound to one worker."""

    __slots__ = ("_acker", "_inbox")

    def __init__(self, sid: int, worker: WorkerLink, send: SendToWorker) -> None:
        super().__init__(sid, worker, send)
        self._inbox: deque[tuple[WsMessage | WsClose, bytes]] = deque()
        self._acker = Acker()  # worker messages sent on to the client

    # -- from the worker ----------------------------------------------------------
    def deliver(self, msg: Message, data: bytes) -> None:
        """A message of this socket from its worker (``data``: a ``WsMessage``'s bytes)."""
        kind = type(msg)
        if kind is Credit:
            self._credit.grant(msg.chunks)  # type: ignore[union-attr]
        elif kind is Error:
            self.fail(WorkerGone(f"{msg.name}: {msg.message}"))  # type: ignore[union-attr]
        elif not self.first.done():
            if kind is WsAccept or kind is WsClose or kind is ResponseHead:
                self.first.set_result(msg)
        elif kind is WsMessage or kind is WsClose:
            self._inbox.append((msg, data))  # type: ignore[arg-type]
            self._wake()

    # -- the client ---------------------------------------------------------------
    async def serve(self, scope: Scope, receive: Receive, send: Send, timeout: float) -> None:
        """Relay the plugin's answer to the handshake, then the messages both ways until a close."""
        loop = asyncio.get_running_loop()
        answer = await self._first_answer(timeout)
        if type(answer) is ResponseHead:
            await deny_websocket(scope, send, answer.status, answer.headers, answer.body)
            return
        if type(answer) is WsClose:
            raise NotAllowedError(
                f"Plugin '{self.worker.plugin_id}' refused the WebSocket"
                + (f": {answer.reason}" if answer.reason else f" (close code {answer.code})")
            )
        assert type(answer) is WsAccept
        await send({"type": "websocket.accept", "subprotocol": answer.subprotocol, "headers": answer.headers})
        reader = loop.create_task(self._from_client(receive))
        try:
            await self._to_client(send)
        finally:
            reader.cancel()

    async def _to_client(self, send: Send) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._inbox:
                failure = self.failure
                if isinstance(failure, ClientGone):
                    return
                if failure is not None:
                    code = GOING_AWAY if isinstance(failure, GatewayStopping) else SERVICE_RESTART
                    self._tell_worker(WsClose(self.id, code, str(failure)))
                    await send({"type": "websocket.close", "code": code, "reason": _reason(str(failure))})
                    return
                self._waiter = loop.create_future()
                await self._waiter
                self._waiter = None
            msg, data = self._inbox.popleft()
            if type(msg) is WsClose:
                await send({"type": "websocket.close", "code": msg.code, "reason": _reason(msg.reason)})
                return
            if msg.text:  # type: ignore[union-attr]
                await send({"type": "websocket.send", "text": data.decode()})
            else:
                await send({"type": "websocket.send", "bytes": bytes(data)})
            credit = self._acker.consumed(True)
            if credit:
                self._tell_worker(Credit(self.id, credit))

    async def _from_client(self, receive: Receive) -> None:
        try:
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    self._tell_worker(WsClose(self.id, message.get("code", 1005), message.get("reason") or ""))
                    self.fail(ClientGone("the client closed the WebSocket"))
                    return
                if message["type"] != "websocket.receive":
                    continue
                await self._credit.acquire(lambda: self.failure)
                text = message.get("text")
                if text is not None:
                    self._send(self.worker, encode(WsMessage(self.id, True)), text.encode())
                else:
                    self._send(self.worker, encode(WsMessage(self.id, False)), message.get("bytes") or b"")
        except Exception as exc:  # the worker went away: the writer side closes the client's socket
            self.fail(exc)


def _reason(text: str) -> str:
    """A close reason fits in a control frame: at most 123 bytes of UTF-8."""
    data = text.encode()[:123]
    return data.decode(errors="ignore")

"""The protocol over a socket: each message decoded once, bad frames dropped, the Hello handshake.

Every kernel process talks through ``Channel``s: the supervisor's control
socket, a gateway's worker socket and control link, a worker's links to the
gateways and the supervisor. A frame that does not decode is handed to
``on_bad_frame`` (by default: logged and dropped), never raised into the
event loop. ``hello`` and ``refusal`` are the two halves of the handshake that
opens every conversation.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence

import zmq

from kernel.errors import ProtocolError
from kernel.protocol import PROTOCOL_VERSION, AuthPolicy, Error, Hello, Message, check_hello, decode, encode
from kernel.transport.sockets import ZERO_COPY, LoopSocket

log = logging.getLogger("kernel.transport")

#: ``(peer, message, frames)``: ``peer`` is the sender's routing id on a ROUTER, ``b""`` on a DEALER;
#: a body message's bytes are ``frames[-1]``
OnMessage = Callable[[bytes, Message, list[bytes]], None]
OnBadFrame = Callable[[bytes, ProtocolError], None]


class Channel:
    """A ZeroMQ socket on the event loop that speaks the protocol.

    ``routed``: a ROUTER, whose messages start with the peer's routing id, or a
    DEALER with a single peer. ``name`` says whose channel it is in log lines.
    """

    __slots__ = ("_on_bad_frame", "_on_message", "_routed", "name", "socket")

    def __init__(
        self,
        sock: zmq.Socket[bytes],
        on_message: OnMessage,
        *,
        routed: bool,
        name: str,
        on_bad_frame: OnBadFrame | None = None,
    ) -> None:
        self.name = name
        self._routed = routed
        self._on_message = on_message
        self._on_bad_frame = on_bad_frame or self._log_bad_frame
        self.socket = LoopSocket(sock, self._receive)

    def _receive(self, frames: list[bytes]) -> None:
        if self._routed:
            peer, payload = frames[0], frames[1]
        else:
            peer, payload = b"", frames[0]
        try:
            msg = decode(payload)
        except ProtocolError as exc:
            self._on_bad_frame(peer, exc)
            return
        self._on_message(peer, msg, frames)

    def _log_bad_frame(self, peer: bytes, exc: ProtocolError) -> None:
        log.error("%s: bad frame from %r: %s", self.name, peer, exc)

    def send(self, frame: bytes, data: bytes | memoryview | None = None, *, to: bytes = b"") -> None:
        """Send an encoded message (and, for a body message, its bytes); raises ``zmq.ZMQError``.

        On a ROUTER ``to`` is the peer's routing id. Bodies of ``ZERO_COPY`` bytes or more
        are handed to ZeroMQ without copying.
        """
        frames: list[bytes | memoryview] = [to, frame] if self._routed else [frame]
        if data is None:
            self.socket.send(frames)
        else:
            frames.append(data)
            self.socket.send(frames, copy=len(data) < ZERO_COPY)

    def offer(self, msg: Message | bytes, *, to: bytes = b"") -> bool:
        """Send a control message if the peer can take it; false (and nothing raised) if it cannot."""
        try:
            self.send(msg if isinstance(msg, bytes) else encode(msg), to=to)
        except zmq.ZMQError:
            return False
        return True

    def close(self) -> None:
        self.socket.close()


def hello(role: str, *, plugin_id: str = "", worker_id: str = "", policies: Sequence[AuthPolicy] = ()) -> bytes:
    """This process's ``Hello``, encoded: the first message on every connection it opens."""
    return encode(Hello(PROTOCOL_VERSION, role, plugin_id, worker_id, os.getpid(), list(policies)))  # type: ignore[arg-type]


def refusal(msg: Message, who: str) -> Error | None:
    """``None`` when ``msg`` is a ``Hello`` of our version; else the ``Error`` to answer it with (logged)."""
    try:
        check_hello(msg)
    except ProtocolError as exc:
        log.error("%s: %s", who, exc)
        return Error(0, "ProtocolError", str(exc))
    return None

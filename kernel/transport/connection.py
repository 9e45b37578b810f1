"""The protocol over a socket: each message decoded once, bad frames dropped, the Hello handshake.

Every kernel process talks through ``Channel``s: the supervisor's control
socket, a gateway's worker socket and control link, a worker's links to the
gateways and the supervisor. A frame that does not decode is handed to
``on_bad_frame`` (by default: logged and dropped), never raised into the
event loop. ``hello`` and ``hello_refusal`` are the two halves of the handshake that
opens every conversation.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Sequence

import zmq

from kernel.errors import ProtocolError
from kernel.protocol import PROTOCOL_VERSION, AuthPolicy, Error, Hello, Message, check_hello, decode, encode
from kernel.transport.curve import peer_key
from kernel.transport.sockets import ZERO_COPY

log = logging.getLogger("kernel.transport")

#: ``(peer, message, frames)``: ``peer`` is the sender's routing id on a ROUTER, ``b""`` on a DEALER;
#: a body message's bytes are ``frames[-1]``
OnMessage = Callable[[bytes, Message, list[bytes]], None]
OnBadFrame = Callable[[bytes, ProtocolError], None]
_BATCH = 512  # messages handled per reader callback before other callbacks get a turn


class Channel:
    """A ZeroMQ socket on the event loop that speaks the protocol.

    ``routed``: a ROUTER, whose messages start with the peer's routing id, or a
    DEALER with a single peer. ``name`` says whose channel it is in log lines.
    zmq.asyncio allocates a future per receive; on the hot path the socket is
    instead drained in the event loop's reader callback, each message decoded
    and handed to a plain function. Sends never block.

    ``keyed``: before each message is handed on, ``peer_key`` is set to the Z85 public key its CURVE
    sender was admitted with (``""``: a plain ``ipc://`` peer); for control traffic, not the hot path.
    """

    __slots__ = (
        "_closed", "_fd", "_keyed", "_loop", "_on_bad_frame", "_on_message", "_routed", "_scheduled", "_sock",
        "name", "peer_key",
    )  # fmt: skip

    def __init__(
        self,
        sock: zmq.Socket[bytes],
        on_message: OnMessage,
        *,
        routed: bool,
        name: str,
        on_bad_frame: OnBadFrame | None = None,
        keyed: bool = False,
    ) -> None:
        self.name = name
        self._keyed = keyed
        self.peer_key = ""
        self._sock = sock
        self._routed = routed
        self._on_message = on_message
        self._on_bad_frame = on_bad_frame or self._log_bad_frame
        self._loop = asyncio.get_running_loop()
        self._scheduled = False
        self._closed = False
        self._fd: int = sock.FD
        self._loop.add_reader(self._fd, self._drain)
        self._loop.call_soon(self._drain)

    def send(self, frame: bytes, data: bytes | memoryview | None = None, *, to: bytes = b"") -> None:
        """Send an encoded message (and, for a body message, its bytes); raises ``zmq.ZMQError``.

        On a ROUTER ``to`` is the peer's routing id. Bodies of ``ZERO_COPY`` bytes or more
        are handed to ZeroMQ without copying.
        """
        frames: list[bytes | memoryview] = [to, frame] if self._routed else [frame]
        if data is None:
            self._sock.send_multipart(frames, zmq.NOBLOCK)
        else:
            frames.append(data)
            self._sock.send_multipart(frames, zmq.NOBLOCK, copy=len(data) < ZERO_COPY)
        # A send can swallow the edge that announces incoming messages: look again soon.
        self._schedule()

    def offer(self, msg: Message | bytes, *, to: bytes = b"") -> bool:
        """Send a control message if the peer can take it; false (and nothing raised) if it cannot."""
        try:
            self.send(msg if isinstance(msg, bytes) else encode(msg), to=to)
        except zmq.ZMQError:
            return False
        return True

    def close(self, linger: int = 0) -> None:
        """Close the socket; ``linger``: milliseconds ZeroMQ may still take to send what is queued."""
        if self._closed:
            return
        self._closed = True
        try:
            self._loop.remove_reader(self._fd)
        except Exception:  # the loop may be closing
            pass
        self._sock.close(linger)

    def _schedule(self) -> None:
        if not self._scheduled and not self._closed:
            self._scheduled = True
            self._loop.call_soon(self._drain)

    def _drain(self) -> None:
        self._scheduled = False
        if self._closed:
            return
        recv = self._recv_keyed if self._keyed else self._sock.recv_multipart
        handle = self._on_message
        routed = self._routed
        for _ in range(_BATCH):
            try:
                frames = recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            except zmq.ZMQError:
                if self._closed:
                    return
                raise
            peer = frames[0] if routed else b""
            try:
                msg = decode(frames[1] if routed else frames[0])
            except IndexError:  # a routed message with no payload frame
                self._on_bad_frame(peer, ProtocolError("empty message"))
                continue
            except ProtocolError as exc:
                self._on_bad_frame(peer, exc)
                continue
            handle(peer, msg, frames)
        self._schedule()  # more may be waiting; let other callbacks run first

    def _recv_keyed(self, flags: int) -> list[bytes]:
        frames = self._sock.recv_multipart(flags, copy=False)
        self.peer_key = peer_key(frames[-1])
        return [f.bytes for f in frames]

    def _log_bad_frame(self, peer: bytes, exc: ProtocolError) -> None:
        log.error("%s: bad frame from %r: %s", self.name, peer, exc)


def hello(
    role: str, *, plugin_id: str = "", worker_id: str = "", policies: Sequence[AuthPolicy] = (), secret: str = ""
) -> bytes:
    """This process's ``Hello``, encoded: the first message on every connection it opens."""
    greeting = Hello(PROTOCOL_VERSION, role, plugin_id, worker_id, os.getpid(), list(policies), secret)  # type: ignore[arg-type]
    return encode(greeting)


def hello_refusal(msg: Message, who: str) -> Error | None:
    """``None`` when ``msg`` is a ``Hello`` of our version; else the ``Error`` to answer it with (logged)."""
    try:
        check_hello(msg)
    except ProtocolError as exc:
        log.error("%s: %s", who, exc)
        return Error(0, "ProtocolError", str(exc))
    return None

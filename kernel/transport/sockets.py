"""The two ZeroMQ socket kinds the kernel uses, with the options every process sets the same way.

A ROUTER is bound by the side that many peers reach (the supervisor's control
socket, each gateway's worker socket); a DEALER connects to it under a routing
id. ``kernel.transport.connection.Channel`` puts either on the event loop.
"""

from __future__ import annotations

from collections.abc import Callable

import zmq

#: bodies at least this large are sent without copying
ZERO_COPY = 64 * 1024
#: the largest frame a socket accepts; a peer sending more is disconnected by ZeroMQ, unread.
#: Body chunks are at most 256 KiB and heads carry at most one; configs ride the control channel.
MAX_FRAME = 16 * 1024 * 1024
Context = zmq.Context[zmq.Socket[bytes]]


def _socket(ctx: Context, kind: int, unbounded: bool) -> zmq.Socket[bytes]:
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME)
    if unbounded:  # flow control is the protocol's job
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
    return sock


def router(ctx: Context, endpoint: str, *, unbounded: bool = False) -> zmq.Socket[bytes]:
    """A ROUTER bound to ``endpoint``: peers address it, it answers each by routing id.

    Sends to a peer that is gone raise (``ROUTER_MANDATORY``) instead of vanishing;
    ``unbounded`` lifts the high-water marks.
    """
    sock = _socket(ctx, zmq.ROUTER, unbounded)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    sock.bind(endpoint)
    return sock


def dealer(
    ctx: Context,
    endpoint: str,
    identity: str,
    *,
    unbounded: bool = False,
    secure: Callable[[zmq.Socket[bytes]], None] | None = None,
) -> zmq.Socket[bytes]:
    """A DEALER connected to ``endpoint`` under the routing id ``identity``; ``secure`` sets its CURVE
    keys first (``kernel.transport.curve.ClientKeys.apply``)."""
    sock = _socket(ctx, zmq.DEALER, unbounded)
    sock.setsockopt(zmq.ROUTING_ID, identity.encode())
    if secure is not None:
        secure(sock)
    sock.connect(endpoint)
    return sock

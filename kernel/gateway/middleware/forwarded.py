"""``backend.trustProxy``: the client's address and scheme from ``X-Forwarded-*``, as Express decides it.

The addresses are the socket's peer, then ``X-Forwarded-For`` from right to left; the client is
the first one not trusted (or the leftmost if all are). ``true`` trusts every hop, a number that
many hops, a list those addresses and subnets (``loopback``, ``linklocal``, ``uniquelocal``
included). ``X-Forwarded-Proto`` counts when the peer itself is trusted. The request then goes on
with ``scope["client"]`` and ``scope["scheme"]`` replaced, so the rate limit, the access log,
HSTS and the plugin (through its worker) all see the real client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

_NAMED = {
    "loopback": ("127.0.0.0/8", "::1/128"),
    "linklocal": ("169.254.0.0/16", "fe80::/10"),
    "uniquelocal": ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"),
}
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Trust = Callable[[str, int], bool]


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def trust_function(trust: bool | int | Sequence[str]) -> Trust:
    """Whether the address ``hops`` away from the gateway (0: the socket's peer) is a trusted proxy."""
    if isinstance(trust, bool):
        return lambda address, hops: trust
    if isinstance(trust, int):
        return lambda address, hops: hops < trust
    networks: list[Network] = []
    for entry in trust:
        for net in _NAMED.get(entry, (entry,)):
            networks.append(ipaddress.ip_network(net, strict=False))

    def trusted(address: str, hops: int) -> bool:
        ip = _address(address)
        return ip is not None and any(ip.version == n.version and ip in n for n in networks)

    return trusted


def client_address(peer: str, forwarded_for: Sequence[str], trusted: Trust) -> str:
    """The client as Express's ``req.ip``: walk back from ``peer`` through ``X-Forwarded-For``."""
    chain = [peer, *reversed(forwarded_for)]
    for hops, address in enumerate(chain[:-1]):
        if not trusted(address, hops):
            return address
        if _address(chain[hops + 1]) is None:  # a hop that is no address: trust stops at the proxy that sent it
            return address
    return chain[-1]


class ForwardedMiddleware:
    def __init__(self, app: ASGIApp, *, trust: bool | int | Sequence[str]) -> None:
        self.app = app
        self.trusted = trust_function(trust)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            forwarded: list[str] = []
            proto = None
            for name, value in scope["headers"]:
                if name == b"x-forwarded-for":
                    forwarded += [a.strip() for a in value.decode("latin-1").split(",") if a.strip()]
                elif name == b"x-forwarded-proto" and proto is None:
                    proto = value.decode("latin-1").split(",")[0].strip().lower()
            client = scope.get("client")
            peer = client[0] if client else ""
            if forwarded:
                address = client_address(peer, forwarded, self.trusted)
                if address != peer:
                    scope["client"] = (address, 0)
            if proto in ("http", "https") and self.trusted(peer, 0):
                secure = proto == "https"
                if scope["type"] == "websocket":
                    scope["scheme"] = "wss" if secure else "ws"
                else:
                    scope["scheme"] = proto
        await self.app(scope, receive, send)

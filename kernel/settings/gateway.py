"""``backend.gateway``: the gateway processes, their HTTP server and its limits.

A contract module: it imports msgspec, the standard library and ``kernel.settings.base``.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from kernel.settings.base import SettingsStruct

__all__ = ["GatewaySettings"]


_Positive = Annotated[int, msgspec.Meta(ge=1)]
_PositiveNumber = Annotated[float, msgspec.Meta(gt=0)]


class GatewaySettings(SettingsStruct, frozen=True):
    """``backend.gateway``."""

    #: gateway processes sharing the port and the workers
    processes: int = 1
    #: the gateways' HTTP server: auto (HTTP/1.1 on uvicorn's httptools, HTTP/2 on hypercorn), hypercorn or uvicorn
    server: Literal["auto", "hypercorn", "uvicorn"] = "auto"
    #: seconds a plugin has to send the first byte of its answer, and at most between two streamed chunks
    request_timeout: float = 30.0
    #: bytes a request body may have; a larger one gets 413
    max_request_body_size: int = 100 * 1024 * 1024
    #: the path plugins are mounted under (`/api/<pluginId>`)
    mount: str = "/api"
    #: seconds a request waits for a plugin with no ready worker while one is starting (a restart, a
    #: recycle) before 503; never longer than ``request_timeout``
    worker_wait_timeout: float = 5.0
    #: header fields a request may carry; more get 431 before anything else reads them
    max_headers: int = 100
    #: bytes of a request's head (request line and fields); more get 431 (414 if the request line alone is over).
    #: 16 KiB: Node's (the reference system's server), so what worked there works here
    max_header_size: _Positive = 16 * 1024
    #: bytes of a request target (path and query); a longer one gets 414. 8 KiB: Apache's and nginx's line limit
    max_url_length: _Positive = 8 * 1024
    #: seconds from a request's first byte to the end of its head (and for a TLS handshake); then 408 and the
    #: connection closes (slowloris). 20: Apache's first deadline; a real client sends its head in one packet
    headers_timeout: _PositiveNumber = 20.0
    #: seconds a request body may pause; then 408 (the connection is cut if the answer has started). 30: TCP
    #: retransmits a lost packet within it (back-off 1+2+4+8+16 s)
    body_idle_timeout: _PositiveNumber = 30.0
    #: seconds the gateway waits for a whole body, in all (not counting the plugin's time); then as above.
    #: 300: Node's `requestTimeout` (a full `maxRequestBodySize` at 350 KB/s)
    body_timeout: _PositiveNumber = 300.0
    #: seconds an idle connection (HTTP/2: no stream open) is kept for its next request. 75: nginx's, above the
    #: 60 s idle timeout of the usual load balancers, so they close first (else: sporadic 502s)
    keep_alive_timeout: _PositiveNumber = 75.0
    #: connections a gateway process holds at once; more wait in the listen backlog (another gateway process
    #: may take them). 4096: ~55 MB of idle connections (13 KiB each, measured); the open-file limit is raised
    max_connections: _Positive = 4096
    #: HTTP/2 requests one connection may have in flight (`SETTINGS_MAX_CONCURRENT_STREAMS`; hypercorn only)
    max_concurrent_streams: _Positive = 100

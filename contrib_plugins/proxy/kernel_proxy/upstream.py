"""The upstream side of one endpoint: a pooled aiohttp session, its targets' health, retries, limits.

One ``Pool`` per endpoint (per worker): its own connection pool and TLS settings, a count of the
requests in flight (``maxConcurrentRequests``: more at once is a 503), and passive health: a target
whose connection failed is skipped for ``coolDownSeconds`` while another target is healthy.

``Pool.open`` sends a request and returns the upstream's response once its head arrived:

- a connection that could not be made (refused, DNS, TLS, connect timeout) never reached the
  upstream: the next target is tried at once, whatever the method (failover);
- a connection that broke before the answer's head (reset, closed) may have reached it: only an
  idempotent request goes on to the next target;
- when every target failed, an idempotent request starts over ``retries.count`` more times, after
  ``retries.backoffSeconds`` (doubling each time);
- a body can be sent again only if it arrived whole (the gateway passes a small body in one
  message); a streamed body is never sent twice;
- no answer head within ``readSeconds`` is a 504 at once (a hung upstream is not asked again).

``Pool.connect_ws`` opens a WebSocket the same way (its handshake is a GET, with the same
failover, retries and timeouts); an upstream that answers the handshake with anything but a
WebSocket (a 403, a plain 200) is a 502 at once.

What is left is a ``BadGatewayError`` (502) or a ``GatewayTimeoutError`` (504); the details (target
URL, exception) go to the log, the caller sees the endpoint's route only.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Final, Literal, TypeVar
from urllib.parse import quote, urlsplit

import aiohttp
from yarl import URL

from kernel.api import BadGatewayError, GatewayTimeoutError, Logger, ServiceUnavailableError

from .config import Endpoint
from .rewrite import join_path

__all__ = ["IDEMPOTENT", "MAX_WS_MESSAGE", "CallerGone", "Pool", "RequestBody"]

IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
#: the largest WebSocket message taken from an upstream: the kernel's own limit per message (16 MiB)
MAX_WS_MESSAGE: Final = 16 * 1024 * 1024
#: what a path keeps unencoded (RFC 3986 pchar and '/')
_PATH_SAFE: Final = "/:@!$&'()*+,;=-._~"
#: headers aiohttp would add on its own; the caller's pass (or not) by the header filter alone
_NO_AUTO_HEADERS: Final = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")

Receive = Callable[[], Any]
_Answer = TypeVar("_Answer")


class CallerGone(Exception):
    """The caller went away while its request body was being passed on."""


class RequestBody:
    """The caller's body: whole when it arrived in the first message (it can be sent again), else streamed once."""

    def __init__(self, first: dict[str, Any], receive: Receive) -> None:
        self._first: bytes = first.get("body", b"")
        self._more: bool = first.get("more_body", False)
        self._receive = receive
        self.started = False

    @property
    def streamed(self) -> bool:
        return self._more

    def payload(self) -> bytes | AsyncIterator[bytes] | None:
        if not self._more:
            return self._first or None
        return self._stream()

    async def _stream(self) -> AsyncIterator[bytes]:
        self.started = True
        if self._first:
            yield self._first
        more = True
        while more:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise CallerGone("the caller closed the connection during the upload")
            more = message.get("more_body", False)
            chunk = message.get("body", b"")
            if chunk:
                yield chunk


class Pool:
    """The upstream connections, target health and concurrency of one endpoint."""

    def __init__(self, endpoint: Endpoint, logger: Logger) -> None:
        self.endpoint = endpoint
        self._log = logger
        self._session: aiohttp.ClientSession | None = None
        self._down: dict[str, float] = {}  # target -> loop time it may be tried again
        self.active = 0
        self._retired = False
        self._closing: set[asyncio.Task[None]] = set()
        self._split = {t: _split(t) for t in endpoint.targets}
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=None, sock_connect=endpoint.connect_timeout, sock_read=endpoint.read_timeout
        )

    # -- concurrency --------------------------------------------------------------
    def acquire(self) -> None:
        limit = self.endpoint.max_concurrent
        if limit is not None and self.active >= limit:
            raise ServiceUnavailableError(
                f"Proxy endpoint '{self.endpoint.prefix}' is at its limit of {limit} concurrent requests; try again later"
            )
        self.active += 1

    def release(self) -> None:
        self.active -= 1
        if self._retired and self.active == 0:
            self._close_soon()

    # -- lifecycle ----------------------------------------------------------------
    def retire(self) -> None:
        """No new requests come (a reload replaced the endpoint): close once the last one is done."""
        self._retired = True
        if self.active == 0:
            self._close_soon()

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    def _close_soon(self) -> None:
        if self._session is None:
            return
        task = asyncio.get_running_loop().create_task(self.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            ep = self.endpoint
            tls: ssl.SSLContext | bool = True
            if not ep.secure:
                tls = False
            elif ep.ca is not None:
                tls = ssl.create_default_context(cafile=ep.ca)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=ep.max_concurrent or 0, limit_per_host=0, ssl=tls, ttl_dns_cache=60
                ),
                cookie_jar=aiohttp.DummyCookieJar(),  # never keep one caller's cookies for the next
                auto_decompress=False,  # bytes are relayed as they come, Content-Encoding with them
                skip_auto_headers=_NO_AUTO_HEADERS,
                raise_for_status=False,
                timeout=self._timeout,  # a WebSocket's handshake (requests pass it each time)
                trust_env=False,
            )
            if hasattr(self._session, "_retry_connection"):
                # aiohttp resends an idempotent request once on a reset connection, at once; retries
                # are this pool's (counted, with backoff, on the next target first): turn it off
                self._session._retry_connection = False
        return self._session

    # -- health -------------------------------------------------------------------
    def order(self) -> list[str]:
        """Targets to try: the healthy ones in config order, then those cooling down (soonest back first)."""
        now = asyncio.get_running_loop().time()
        healthy = [t for t in self.endpoint.targets if self._down.get(t, 0.0) <= now]
        cooling = sorted((t for t in self.endpoint.targets if t not in healthy), key=lambda t: self._down[t])
        return healthy + cooling

    def _failed(self, target: str, exc: BaseException) -> None:
        was_up = target not in self._down
        self._down[target] = asyncio.get_running_loop().time() + self.endpoint.cool_down
        self._log.warning(
            "proxy upstream failed" + (f", skipped for {self.endpoint.cool_down:g}s" if was_up else ""),
            endpoint=self.endpoint.prefix,
            target=target,
            error=_describe(exc),
        )

    def _succeeded(self, target: str) -> None:
        if self._down.pop(target, None) is not None:
            self._log.info("proxy upstream answers again", endpoint=self.endpoint.prefix, target=target)

    # -- one request ----------------------------------------------------------------
    async def open(
        self, method: str, path: str, query: bytes, headers: Sequence[tuple[str, str]], body: RequestBody
    ) -> aiohttp.ClientResponse:
        """Send the request (failover, retries: see the module doc) and return the answer once its head is in."""

        def send(target: str) -> Awaitable[aiohttp.ClientResponse]:
            return self._client().request(
                method,
                self._url(target, path, query),
                headers=list(headers),
                data=body.payload(),
                allow_redirects=False,
                timeout=self._timeout,
            )

        # a streamed body went (partly) out: it cannot be sent again
        return await self._first_answer(method in IDEMPOTENT, send, lambda: not body.started)

    async def connect_ws(
        self, path: str, query: bytes, headers: Sequence[tuple[str, str]], protocols: Sequence[str]
    ) -> aiohttp.ClientWebSocketResponse[Literal[True]]:
        """Open a WebSocket to the upstream (``ws://`` or ``wss://``), with the failover and retries of a GET.

        An upstream that answers the handshake with anything but a WebSocket is a 502 at once.
        """

        async def connect(target: str) -> aiohttp.ClientWebSocketResponse[Literal[True]]:
            url = self._url(target, path, query, websocket=True)
            try:
                return await self._client().ws_connect(
                    url, headers=list(headers), protocols=protocols, max_msg_size=MAX_WS_MESSAGE
                )
            except aiohttp.WSServerHandshakeError as exc:
                self._log.warning(
                    "proxy upstream refused the WebSocket",
                    endpoint=self.endpoint.prefix,
                    url=str(url),
                    status=exc.status,
                    error=exc.message,
                )
                raise BadGatewayError(
                    f"The upstream of proxy endpoint '{self.endpoint.prefix}' refused the WebSocket "
                    f"(HTTP {exc.status}: {exc.message})"
                ) from None

        return await self._first_answer(True, connect, lambda: True)

    async def _first_answer(
        self, idempotent: bool, attempt: Callable[[str], Awaitable[_Answer]], resendable: Callable[[], bool]
    ) -> _Answer:
        """``attempt(target)`` over the targets and the retry rounds (see the module doc) until one answers."""
        ep = self.endpoint
        last: BaseException | None = None
        for round_ in range(1 + (ep.retries if idempotent else 0)):
            if round_:
                await asyncio.sleep(ep.backoff * 2 ** (round_ - 1))
            for target in self.order():
                if not resendable():
                    raise self._give_up(last)
                try:
                    answer = await attempt(target)
                except (aiohttp.ConnectionTimeoutError, aiohttp.ClientConnectorError) as exc:
                    self._failed(target, exc)  # never reached the upstream: the next target, any method
                    last = exc
                    continue
                except aiohttp.ServerTimeoutError as exc:
                    self._log.warning(
                        "proxy upstream timed out", endpoint=ep.prefix, target=target, error=_describe(exc)
                    )
                    raise GatewayTimeoutError(
                        f"The upstream of proxy endpoint '{ep.prefix}' did not answer within {ep.read_timeout:g}s"
                    ) from None
                except aiohttp.ClientError as exc:
                    if isinstance(exc.__cause__, CallerGone):
                        raise exc.__cause__ from None
                    self._failed(target, exc)  # it may have reached the upstream
                    last = exc
                    if not idempotent:
                        raise self._give_up(last) from None
                    continue
                self._succeeded(target)
                return answer
        raise self._give_up(last)

    def _give_up(self, last: BaseException | None) -> Exception:
        prefix = self.endpoint.prefix
        if isinstance(last, aiohttp.ConnectionTimeoutError):
            return GatewayTimeoutError(
                f"The upstream of proxy endpoint '{prefix}' did not accept a connection within "
                f"{self.endpoint.connect_timeout:g}s"
            )
        if isinstance(last, aiohttp.ClientConnectorCertificateError):
            return BadGatewayError(
                f"The upstream of proxy endpoint '{prefix}' presented a certificate that could not be verified"
            )
        if isinstance(last, aiohttp.ClientConnectorError):
            return BadGatewayError(f"The upstream of proxy endpoint '{prefix}' is unreachable")
        return BadGatewayError(f"The upstream of proxy endpoint '{prefix}' closed the connection without answering")

    def _url(self, target: str, path: str, query: bytes, *, websocket: bool = False) -> URL:
        origin, base = self._split[target]
        if websocket:  # http://h -> ws://h, https://h -> wss://h
            origin = "ws" + origin[len("http") :]
        url = origin + quote(join_path(base, path), safe=_PATH_SAFE + "%")  # the client's escapes stay as sent
        if query:
            url += "?" + query.decode("latin-1")
        return URL(url, encoded=True)


def _split(target: str) -> tuple[str, str]:
    """``http://h:1/v1`` as ``("http://h:1", "/v1")``."""
    parts = urlsplit(target)
    return f"{parts.scheme}://{parts.netloc}", parts.path


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"

"""``MyAwesomeApiClient``: the seed's API client, typed, for an API reached through the kernel's proxy plugin.

The API (``GET /users``, ``GET /users/{userId}``, ``DELETE /users/{userId}``) is proxied by the
``proxy`` plugin at ``<backend.baseUrl>/api/proxy/<proxy path>``::

    proxy:
      endpoints:
        /myawesomeapi: https://api.myawesomeservice.com/v1

Each request carries the caller's token (``Authorization: Bearer``): the proxy, like every
plugin, needs one unless the endpoint says ``credentials: dangerously-allow-unauthenticated``.
In a plugin, that is a token for the ``proxy`` plugin from ``core.auth``, as the plugin itself or
on behalf of the user of a request (see the package README). Failures are the kernel's errors
(``myawesomeapi_client.errors``), so a plugin can let them through and the kernel answers them in
its one error shape.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol, TypeVar
from urllib.parse import quote

import aiohttp
import msgspec

from kernel.api import ConfigReader, GatewayTimeoutError, InputError, ServiceUnavailableError

from .errors import BODY_PREVIEW, ResponseError, error_from_response

__all__ = ["DEFAULT_PROXY_PATH", "MyAwesomeApi", "MyAwesomeApiClient", "TokenSource", "User"]

#: the proxy endpoint the client calls unless told otherwise (``proxy.endpoints./myawesomeapi``)
DEFAULT_PROXY_PATH: Final = "/myawesomeapi"
#: where an answer's body stops being read (larger answers are refused)
MAX_BODY_BYTES: Final = 16 << 20

#: the token to send: a string, a function (sync or async) giving one per request, or None for no token
TokenSource = str | Callable[[], Awaitable[str | None] | str | None] | None
T = TypeVar("T")


class User(msgspec.Struct, frozen=True):
    """A user of the API, as the seed defines it; fields the API adds are ignored."""

    name: str
    email: str


class MyAwesomeApi(Protocol):
    """The seed's ``MyAwesomeApi`` interface: what a plugin depends on (a test can hand it a fake)."""

    @property
    def url(self) -> str: ...
    async def list_users(self) -> list[User]: ...
    async def get_user(self, user_id: str) -> User: ...
    async def delete_user(self, user_id: str) -> bool: ...


class _Session:
    """One aiohttp session, opened on first use, shared by a client and its ``with_token`` copies."""

    def __init__(self, given: aiohttp.ClientSession | None) -> None:
        self._session = given
        self._owned = given is None

    def get(self) -> aiohttp.ClientSession:
        if self._session is None or (self._owned and self._session.closed):
            self._session = aiohttp.ClientSession(raise_for_status=False)
        return self._session

    async def close(self) -> None:
        if self._owned and self._session is not None and not self._session.closed:
            await self._session.close()


class MyAwesomeApiClient:
    """The API through ``<url><mount>/proxy<proxy_path>``; ``url`` is the backend's base URL (the seed's ``url``).

    ``token``: sent as ``Authorization: Bearer`` (see ``TokenSource``). ``session``: an aiohttp
    session to use (the caller closes it); otherwise the client opens one, closed by ``close()``
    (or ``async with``). ``timeout``: seconds for one call, connect to last byte.
    """

    def __init__(
        self,
        url: str,
        *,
        proxy_path: str = DEFAULT_PROXY_PATH,
        mount: str = "/api",
        token: TokenSource = None,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.url = url.rstrip("/")
        segments = (part.strip("/") for part in (mount, "proxy", proxy_path))
        self.api_url = "/".join([self.url, *(s for s in segments if s)])
        self.timeout = timeout
        self._token = token
        self._session = _Session(session)

    @classmethod
    def from_config(
        cls,
        config: ConfigReader,
        *,
        proxy_path: str | None = None,
        token: TokenSource = None,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 30.0,
    ) -> MyAwesomeApiClient:
        """The seed's ``fromConfig``: ``backend.baseUrl`` (required), the kernel's mount
        (``backend.gateway.mount``, default ``/api``) and the proxy path (``proxy_path``, else
        ``myAwesomeApi.proxyPath``, else ``/myawesomeapi``)."""
        path = proxy_path or config.get_optional_string("myAwesomeApi.proxyPath") or DEFAULT_PROXY_PATH
        mount = config.get_optional_string("backend.gateway.mount") or "/api"
        return cls(
            config.get_string("backend.baseUrl"),
            proxy_path=path,
            mount=mount,
            token=token,
            session=session,
            timeout=timeout,
        )

    def with_token(self, token: TokenSource) -> MyAwesomeApiClient:
        """The same client (same session) sending another token: for a call on behalf of one user."""
        other = copy.copy(self)
        other._token = token
        return other

    async def close(self) -> None:
        await self._session.close()

    async def __aenter__(self) -> MyAwesomeApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ the seed's three calls

    async def list_users(self) -> list[User]:
        """``GET /users``."""
        return self._decode("GET", "/users", await self._fetch("GET", "/users"), list[User])

    async def get_user(self, user_id: str) -> User:
        """``GET /users/{userId}``; ``NotFoundError`` when there is no such user."""
        path = _user_path(user_id)
        return self._decode("GET", path, await self._fetch("GET", path), User)

    async def delete_user(self, user_id: str) -> bool:
        """``DELETE /users/{userId}``: the API's JSON boolean, ``True`` for an empty success."""
        path = _user_path(user_id)
        body = await self._fetch("DELETE", path)
        return True if not body.strip() else self._decode("DELETE", path, body, bool)

    # ------------------------------------------------------------------ one request

    async def _headers(self) -> dict[str, str]:
        token: Any = self._token
        if callable(token):
            token = token()
            if inspect.isawaitable(token):
                token = await token
        headers = {"accept": "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        return headers

    async def _fetch(self, method: str, path: str) -> bytes:
        """The body of a 2xx answer to ``method`` ``path``; otherwise the matching kernel error."""
        url = self.api_url + path
        headers = await self._headers()
        try:
            async with self._session.get().request(
                method,
                url,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                allow_redirects=False,  # a redirect would carry the token elsewhere
            ) as resp:
                status = resp.status
                body = await _read(resp.content, MAX_BODY_BYTES if 200 <= status < 300 else BODY_PREVIEW)
        except TimeoutError as exc:
            raise GatewayTimeoutError(
                f"MyAwesomeApi {method} {path} failed, no answer within {self.timeout:g}s", cause=exc
            ) from None
        except aiohttp.ClientError as exc:
            raise ServiceUnavailableError(
                f"MyAwesomeApi {method} {path} failed, {self.url} is unreachable", cause=exc
            ) from exc
        if not 200 <= status < 300:
            raise error_from_response(method, url, path, status, body)
        if len(body) > MAX_BODY_BYTES:
            raise ServiceUnavailableError(f"MyAwesomeApi {method} {path} failed, answer over {MAX_BODY_BYTES} bytes")
        return body

    def _decode(self, method: str, path: str, body: bytes, type_: type[T]) -> T:
        try:
            return msgspec.json.decode(body, type=type_)
        except msgspec.DecodeError as exc:  # not JSON, or JSON of another shape
            raise ServiceUnavailableError(
                f"MyAwesomeApi {method} {path} failed, unexpected answer: {exc}",
                cause=ResponseError(method, self.api_url + path, 200, body),
            ) from exc


async def _read(content: aiohttp.StreamReader, limit: int) -> bytes:
    """The body, or its first ``limit + 1`` bytes when it is longer (one byte more tells it is too long)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in content.iter_any():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            break
    return b"".join(chunks)[: limit + 1]


def _user_path(user_id: str) -> str:
    """``/users/<id>``, the id percent-encoded as one path segment; ``InputError`` for ids no URL can carry."""
    if not isinstance(user_id, str) or user_id in ("", ".", ".."):
        raise InputError(f"Invalid user id: {user_id!r}")
    return "/users/" + quote(user_id, safe="")

"""The ``pluginClient`` service: one object for plugin-to-plugin calls (discovery + token + errors).

The HTTP client is aiohttp, one pooled session per worker: measured against httpx on the
``p2p`` benchmark (a plugin calling another through the gateway on every request), httpx's
connection pool cost most of the caller's CPU (about 400 calls/s against 1,650 with aiohttp).

Tokens for the plugin's own calls are reused until five minutes before they expire, so the
gateway verifies each one once and then answers from its cache. Calls on a user's behalf get
a token of their own each time (its life is bounded by the user's).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from kernel.api import (
    AuthenticationError,
    ConflictError,
    Credentials,
    Discovery,
    InputError,
    KernelError,
    NotAllowedError,
    NotFoundError,
    NotImplementedError,
    NotModifiedError,
    PluginResponse,
    ServiceUnavailableError,
)
from kernel_services.auth.service import DefaultAuth
from kernel_services.auth.tokens import expiry_of

#: an own-service token is renewed this long before it expires
RENEW_BEFORE = 300.0
_ERRORS: dict[str, type[KernelError]] = {
    cls.name: cls
    for cls in (
        InputError,
        AuthenticationError,
        NotAllowedError,
        NotFoundError,
        ConflictError,
        NotModifiedError,
        NotImplementedError,
        ServiceUnavailableError,
    )
}
_BY_STATUS = {400: InputError, 401: AuthenticationError, 403: NotAllowedError, 404: NotFoundError, 409: ConflictError}


class HttpPluginClient:
    """A ``kernel.api.PluginClient`` over one pooled HTTP client per worker."""

    def __init__(self, auth: DefaultAuth, discovery: Discovery) -> None:
        self._auth = auth
        self._discovery = discovery
        self._tokens: dict[str, tuple[str, float]] = {}
        self._http: Any = None

    async def request(
        self,
        target_plugin_id: str,
        method: str,
        path: str,
        *,
        on_behalf_of: Credentials | None = None,
        json: Any = None,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> PluginResponse:
        import aiohttp

        token = await self._token(target_plugin_id, on_behalf_of)
        url = await self._discovery.get_base_url(target_plugin_id) + path
        if self._http is None:
            self._http = aiohttp.ClientSession()
        sent = {**(headers or {}), "authorization": f"Bearer {token}"}
        try:
            async with self._http.request(
                method,
                url,
                json=json,
                data=content,
                params=params,
                headers=sent,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                body = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ServiceUnavailableError(f"Plugin '{target_plugin_id}' cannot be reached: {exc!r}") from None
        answer = PluginResponse(response.status, {k.lower(): v for k, v in response.headers.items()}, body)
        if answer.status >= 400:
            raise _error_of(target_plugin_id, method, path, answer)
        return answer

    async def _token(self, target: str, on_behalf_of: Credentials | None) -> str:
        if on_behalf_of is not None and on_behalf_of.principal.type == "user":
            return await self._auth.get_plugin_request_token(on_behalf_of=on_behalf_of, target_plugin_id=target)
        cached = self._tokens.get(target)
        if cached is not None and cached[1] - time.time() > RENEW_BEFORE:
            return cached[0]
        own = await self._auth.get_own_service_credentials()
        token = await self._auth.get_plugin_request_token(on_behalf_of=own, target_plugin_id=target)
        self._tokens[target] = (token, expiry_of(token) or time.time())
        return token

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None


def _error_of(plugin_id: str, method: str, path: str, answer: PluginResponse) -> KernelError:
    """The kernel error for an error answer, from the error shape's name, else from the status."""
    name, message = "", answer.content[:200].decode("utf-8", "replace")
    try:
        error = answer.json().get("error", {})
        name, message = str(error.get("name", "")), str(error.get("message", message))
    except (ValueError, AttributeError):
        pass
    cls = _ERRORS.get(name) or _BY_STATUS.get(answer.status)
    text = f"{method} {path} of plugin '{plugin_id}' answered {answer.status}: {message}"
    if cls is not None:
        return cls(text)
    return KernelError(text)

"""Public keys fetched from a JWKS URL: cached by key id, refreshed on an unknown one, never a hang.

A ``JwksClient`` fetches ``{"keys": [...]}`` with the standard library's HTTP client in a thread
(fetches are rare, and a gateway that verifies tokens then loads no HTTP client library), with a
time bound. A key id
it does not know triggers a refresh, at most once per ``min_refresh`` seconds: a lookup inside
that cooldown waits for its end and the next fetch (a replica's or a rotated key is published
before it signs, so it is found then), and forged key ids cannot make it hammer the issuer;
concurrent lookups share one fetch. An issuer that cannot be reached raises ``KeysUnavailable``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jwt

DEFAULT_TIMEOUT = 5.0
DEFAULT_MIN_REFRESH = 1.0
MAX_JWKS_BYTES = 1024 * 1024


class KeysUnavailable(Exception):
    """The key set could not be fetched (unreachable, an error status, not a JWKS); ``status``: the HTTP one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class JwksClient:
    """The keys at ``url()`` (a function: the URL may come from discovery, which can change)."""

    def __init__(
        self,
        url: Callable[[], Awaitable[str]],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        min_refresh: float = DEFAULT_MIN_REFRESH,
    ) -> None:
        self._url = url
        self._timeout = timeout
        self._min_refresh = min_refresh
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = -float("inf")
        self._fetching: asyncio.Task[None] | None = None

    async def get_key(self, kid: str) -> jwt.PyJWK | None:
        """The key ``kid``, fetching the set when it is unknown (after the cooldown); ``None`` if it stays unknown."""
        key = self._keys.get(kid)
        if key is not None:
            return key
        if self._fetching is None:
            wait = self._fetched_at + self._min_refresh - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                key = self._keys.get(kid)  # another lookup may have refreshed meanwhile
                if key is not None:
                    return key
        await self._refresh()
        return self._keys.get(kid)

    async def _refresh(self) -> None:
        if self._fetching is None:
            self._fetching = asyncio.get_running_loop().create_task(self._fetch())
            # its failure is read by whoever awaits it; if all of them gave up (timed out), read it here
            self._fetching.add_done_callback(lambda done: done.cancelled() or done.exception())
        task = self._fetching
        try:
            await asyncio.shield(task)
        finally:
            if task.done() and self._fetching is task:
                self._fetching = None

    async def _fetch(self) -> None:
        import jwt  # loaded with the first key set: a process that never verifies never pays for it

        url = await self._url()
        try:
            status, document = await asyncio.to_thread(_get_json, url, self._timeout)
        except (OSError, ValueError) as exc:
            raise KeysUnavailable(f"cannot fetch keys from {url}: {type(exc).__name__}: {exc}") from None
        finally:
            self._fetched_at = time.monotonic()
        if status != 200:
            raise KeysUnavailable(f"fetching keys from {url} answered {status}", status)
        try:
            self._keys = _parse(document)
        except (ValueError, jwt.PyJWTError) as exc:
            raise KeysUnavailable(f"{url} did not answer a JWKS: {exc}") from None


def _get_json(url: str, timeout: float) -> tuple[int, Any]:
    """``GET url`` (in a thread): the status and, for a 200, the JSON body (at most 1 MiB)."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read(MAX_JWKS_BYTES))
    except urllib.error.HTTPError as exc:
        return exc.code, None


def _parse(document: Any) -> dict[str, jwt.PyJWK]:
    import jwt

    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("no 'keys' list")
    keys: dict[str, jwt.PyJWK] = {}
    for raw in document["keys"]:
        if isinstance(raw, dict) and isinstance(raw.get("kid"), str):
            try:
                keys[raw["kid"]] = jwt.PyJWK.from_dict(raw)
            except jwt.PyJWTError:
                continue  # a key of a kind we cannot use: its tokens fail as unknown
    return keys

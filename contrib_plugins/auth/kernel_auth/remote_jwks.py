"""The public keys of an external issuer, fetched from its JWKS URL with httpx and cached by ``kid``.

* the first lookup fetches; later lookups answer from the cache;
* an unknown ``kid`` refetches, at most once every ``refresh_interval`` seconds (30): a flood of
  tokens naming made-up keys costs the issuer one request per interval;
* the whole set is refetched when older than ``max_age`` (10 min), so removed keys go away; if
  that refetch fails, the cached keys keep serving;
* each fetch has a ``timeout`` (5 s); an issuer that cannot be reached is a
  ``ServiceUnavailableError`` (503), a token naming a key the issuer does not publish an
  ``AuthenticationError`` (401).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from kernel.api import AuthenticationError, ServiceUnavailableError

__all__ = ["PublishedKey", "RemoteJwks"]


@dataclass(frozen=True)
class PublishedKey:
    """A key of the issuer's JWKS and the algorithm it is published for (its ``alg``, if any)."""

    key: jwt.PyJWK
    alg: str | None


class RemoteJwks:
    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        refresh_interval: float = 30.0,
        max_age: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._timeout = timeout
        self._refresh_interval = refresh_interval
        self._max_age = max_age
        self._clock = clock
        self._keys: dict[str | None, list[PublishedKey]] | None = None
        self._fetched_at = 0.0  # last successful fetch
        self._attempted_at = 0.0  # last attempt, successful or not
        self._lock = asyncio.Lock()
        #: number of fetches attempted (for tests and logs)
        self.fetches = 0

    async def keys_for(self, kid: str | None) -> list[PublishedKey]:
        """The issuer's signing keys with this ``kid`` (every key when the token names none)."""
        if self._keys is None:
            await self._refresh(min_gap=1.0)  # nothing cached: raises 503 when the issuer cannot be reached
        else:
            now = self._clock()
            stale = now - self._fetched_at >= self._max_age
            if (stale or not self._lookup(kid)) and now - self._attempted_at >= self._refresh_interval:
                await self._refresh(min_gap=self._refresh_interval)
        found = self._lookup(kid)
        if not found:
            raise AuthenticationError(f"the token's signing key {kid!r} is not published at {self.url}")
        return found

    def _lookup(self, kid: str | None) -> list[PublishedKey]:
        keys = self._keys or {}
        if kid is None:
            return [k for group in keys.values() for k in group]
        return list(keys.get(kid, ()))

    async def _refresh(self, *, min_gap: float) -> None:
        async with self._lock:
            if self.fetches and self._clock() - self._attempted_at < min_gap:
                # another lookup fetched (or tried to) while this one waited for the lock
                if self._keys is None:
                    raise ServiceUnavailableError(f"could not fetch the issuer's keys from {self.url}")
                return
            self._attempted_at = self._clock()
            self.fetches += 1
            try:
                self._keys = await self._fetch()
                self._fetched_at = self._clock()
            except ServiceUnavailableError:
                if self._keys is None:
                    raise
                # keep serving the cached keys; a lookup after the interval tries again

    async def _fetch(self) -> dict[str | None, list[PublishedKey]]:
        try:
            async with asyncio.timeout(self._timeout):  # the whole fetch, not each phase of it
                async with httpx.AsyncClient(timeout=self._timeout, follow_redirects=False) as client:
                    resp = await client.get(self.url, headers={"accept": "application/json"})
            resp.raise_for_status()
            data: Any = resp.json()
        except (httpx.HTTPError, ValueError, TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
            raise ServiceUnavailableError(f"could not fetch the issuer's keys from {self.url}: {reason}") from None
        raw = data.get("keys") if isinstance(data, dict) else None
        if not isinstance(raw, list):
            raise ServiceUnavailableError(f"{self.url} did not answer a JWKS ({{'keys': [...]}})")
        keys: dict[str | None, list[PublishedKey]] = {}
        for item in raw:
            if not isinstance(item, dict) or item.get("use", "sig") != "sig":
                continue
            try:
                key = PublishedKey(jwt.PyJWK(item), item["alg"] if isinstance(item.get("alg"), str) else None)
            except (jwt.PyJWKError, jwt.InvalidKeyError):  # unsupported or malformed: skip it, keep the others
                continue
            kid = item.get("kid")
            keys.setdefault(kid if isinstance(kid, str) else None, []).append(key)
        return keys

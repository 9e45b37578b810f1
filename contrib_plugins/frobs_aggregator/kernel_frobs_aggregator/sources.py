"""One upstream as a source of summaries, through the cache service (``core.cache``).

The cache keeps one entry per upstream URL, ``<name>:<baseUrl>`` (a new URL after a config reload
never shows the old upstream's data): ``{"summary": {...}, "fetchedAt": <epoch seconds>}``, set
after every good answer with a TTL of ``max(fallback_ttl, fresh_ttl)``. That one entry serves two
purposes:

- **fresh copy**: younger than ``fresh_ttl``, it is the answer (``cached``) and the upstream is
  not asked. ``fresh_ttl`` 0 (frobs) means always ask.
- **fallback**: when the upstream fails (refused, timeout, 5xx, not a JSON array), a copy younger
  than ``fallback_ttl`` stands in (``stale``, with the reason); without one the part is
  ``missing``.

For a cached source, concurrent requests that need the upstream at the same moment share one call
(single flight, per worker): when the TTL expires under load, the slow upstream sees one request,
not a burst. The shared call is shielded, so a client that disconnects does not cancel it for the
others. A source that is not cached (``fresh_ttl`` 0) is asked once for every summary: ``live``
always means "asked for this answer".

A failing cache (say, Redis down) is logged and treated as empty: it never fails a summary.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from kernel.api import CacheService, Logger

from .summary import Part
from .upstream import Upstream, UpstreamError

__all__ = ["Source"]

Summarize = Callable[[list[Any]], dict[str, Any]]


class Source:
    """``GET <baseUrl><path>`` summarized by ``summarize``, cached as the module docstring says."""

    def __init__(
        self,
        name: str,
        path: str,
        summarize: Summarize,
        *,
        upstream: Upstream,
        cache: CacheService,
        logger: Logger,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.path = path
        self._summarize = summarize
        self._upstream = upstream
        self._cache = cache
        self._logger = logger
        self._clock = clock
        self._inflight: dict[str, asyncio.Future[dict[str, Any]]] = {}

    def _key(self, base_url: str) -> str:
        return f"{self.name}:{base_url}"

    async def part(self, base_url: str, *, timeout: float, fresh_ttl: float, fallback_ttl: float) -> Part:
        """This upstream's part of a summary now (never raises for an upstream failure)."""
        key = self._key(base_url)
        entry = await self._cached(key)
        if entry is not None and fresh_ttl > 0 and self._clock() - entry["fetchedAt"] < fresh_ttl:
            return Part("cached", entry["summary"], entry["fetchedAt"])
        try:
            ttl = max(fallback_ttl, fresh_ttl)
            fetched = await (self._fetch_once if fresh_ttl > 0 else self._fetch)(key, base_url, timeout, ttl)
        except UpstreamError as exc:
            if entry is not None and self._clock() - entry["fetchedAt"] < fallback_ttl:
                return Part("stale", entry["summary"], entry["fetchedAt"], f"{exc}")
            return Part("missing", error=f"{exc}")
        return Part("live", fetched["summary"], fetched["fetchedAt"])

    async def _fetch_once(self, key: str, base_url: str, timeout: float, ttl: float) -> dict[str, Any]:
        """The upstream's fresh entry; callers that arrive while a call is under way share it."""
        shared = self._inflight.get(key)
        if shared is None:
            shared = asyncio.ensure_future(self._fetch(key, base_url, timeout, ttl))
            self._inflight[key] = shared
            shared.add_done_callback(lambda done: self._forget(key, done))
        return await asyncio.shield(shared)

    def _forget(self, key: str, done: asyncio.Future[dict[str, Any]]) -> None:
        if self._inflight.get(key) is done:
            del self._inflight[key]
        if not done.cancelled():
            done.exception()  # retrieved: no "never retrieved" warning when every waiter went away

    async def _fetch(self, key: str, base_url: str, timeout: float, ttl: float) -> dict[str, Any]:
        items = await self._upstream.get_list(self.name, base_url.rstrip("/") + self.path, timeout=timeout)
        entry = {"summary": self._summarize(items), "fetchedAt": self._clock()}
        try:
            await self._cache.set(key, entry, ttl=ttl)
        except Exception as exc:
            self._logger.warning("cache write failed", key=key, error=f"{type(exc).__name__}: {exc}")
        return entry

    async def _cached(self, key: str) -> dict[str, Any] | None:
        try:
            entry = await self._cache.get(key)
        except Exception as exc:
            self._logger.warning("cache read failed", key=key, error=f"{type(exc).__name__}: {exc}")
            return None
        valid = isinstance(entry, dict) and isinstance(entry.get("fetchedAt"), int | float) and "summary" in entry
        return entry if valid else None

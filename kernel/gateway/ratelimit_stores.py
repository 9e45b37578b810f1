"""The rate limit's counts: in this gateway process (``memory``), or in Redis shared by all (``redis``).

Both count in fixed windows: a key's window starts with its first request and lasts ``window``
seconds. Redis does it in one round trip (a script: ``INCR``, ``PEXPIRE`` on the first hit,
``PTTL``), so gateways of several processes and instances agree on every count. Its keys are
``<keyPrefix>kernel:ratelimit:<client>``, the prefix being ``backend.rateLimit.store.keyPrefix`` or else
the deployment's ``backend.cache.keyPrefix``: two deployments sharing one Redis count apart, the
instances of one deployment together. The ``redis`` package (the ``shared`` extra) is imported only
when a Redis store is configured.
"""

from __future__ import annotations

import time
from typing import Any

from kernel.settings import RateLimitStore

_KEY_PREFIX = "kernel:ratelimit:"
_HIT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {count, ttl}
"""
_UNDO = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('DECR', KEYS[1]) end
return 0
"""


class MemoryStore:
    """Counts of this process; expired windows are swept at most once per second."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._counts: dict[str, list[float]] = {}  # key -> [count, window end]
        self._next_sweep = 0.0

    async def hit(self, key: str, window: float) -> tuple[int, float]:
        now = self._clock()
        if now >= self._next_sweep:
            self._counts = {k: v for k, v in self._counts.items() if v[1] > now}
            self._next_sweep = now + 1.0
        entry = self._counts.get(key)
        if entry is None or entry[1] <= now:
            entry = self._counts[key] = [0, now + window]
        entry[0] += 1
        return int(entry[0]), entry[1] - now

    async def undo(self, key: str) -> None:
        entry = self._counts.get(key)
        if entry is not None and entry[0] > 0:
            entry[0] -= 1

    async def close(self) -> None:
        self._counts.clear()


class RedisStore:
    """Counts in Redis under ``<key_prefix>kernel:ratelimit:<key>``, shared by every gateway of that prefix."""

    def __init__(self, url: str, key_prefix: str = "") -> None:
        import redis.asyncio

        self._prefix = key_prefix + _KEY_PREFIX
        self._client: Any = redis.asyncio.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self._hit = self._client.register_script(_HIT)
        self._undo = self._client.register_script(_UNDO)

    async def hit(self, key: str, window: float) -> tuple[int, float]:
        count, ttl_ms = await self._hit(keys=[self._prefix + key], args=[max(1, round(window * 1000))])
        return int(count), int(ttl_ms) / 1000.0

    async def undo(self, key: str) -> None:
        await self._undo(keys=[self._prefix + key])

    async def close(self) -> None:
        await self._client.aclose()


def create_store(settings: RateLimitStore) -> MemoryStore | RedisStore:
    """The store ``backend.rateLimit.store`` names."""
    if settings.type == "redis":
        assert settings.connection is not None  # read_edge_settings checked it
        return RedisStore(settings.connection, settings.key_prefix or "")
    return MemoryStore()

"""The cache service: per-plugin namespaced key/value storage with TTLs.

Config (all optional):

``backend.cache.store``
    ``memory`` (default): an in-process cache (cachetools), one per worker.
    ``redis``: one cache shared by every worker and kernel instance using the
    same Redis (redis-py's asyncio client).
``backend.cache.connection``
    Redis URL such as ``redis://127.0.0.1:6379/0`` (required for ``redis``).
``backend.cache.defaultTtl``
    Seconds a value lives when ``set`` is given no ``ttl``; none means forever.
``backend.cache.keyPrefix``
    Prepended to every Redis key (default ``""``), to share one Redis between
    environments. Keys are ``<keyPrefix><pluginId>:<key>``.
``backend.cache.maxItems``
    Size bound of the in-process cache (default 10000, least recently used goes).
``backend.cache.pluginUsers``
    With Redis, each plugin reaches it as an ACL user of its own, limited to its keys
    (``services.cache_users``); unset: when the kernel's login may make such users.

Values must be JSON-compatible (dict with string keys, list, str, int, float,
bool, None; tuples come back as lists); anything else raises ``TypeError``
naming the key. TTLs are in seconds and must be positive.

A cache is a cache: while Redis cannot be reached, ``get`` is a miss and ``set``
and ``delete`` do nothing, so requests go on (slower, computing what they would
have read) instead of failing. The outage is logged once when it starts and once
when it ends, not at every call; the client reconnects by itself, no restart.
A ``delete`` during an outage is lost: a value set before it can be read after
it until its TTL ends. Backstage does the same (its Keyv stores turn a lost
connection into a miss and a no-op, and log the error).
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable
from typing import Any, Literal, Protocol

import cachetools
import msgspec

from kernel.api import (
    CacheService,
    ConfigError,
    ConfigReader,
    Lifecycle,
    Logger,
    PluginMetadata,
    RootConfig,
    core_services,
    create_service_factory,
    read_section,
)
from kernel_services import instruments
from kernel_services.logger import plugin_logger
from kernel_services.outage import Outage


class CacheStore(Protocol):
    """Where encoded values live; keys arrive already namespaced."""

    async def get(self, key: str) -> str | None: ...
    async def set(self, key: str, raw: str, ttl: float | None) -> None: ...
    async def delete(self, key: str) -> None: ...
    async def close(self) -> None: ...


def _expiry(_key: str, entry: tuple[str, float | None], now: float) -> float:
    ttl = entry[1]
    return math.inf if ttl is None else now + ttl


class MemoryStore:
    """In-process store with a TTL per key (cachetools ``TLRUCache``)."""

    def __init__(self, max_items: int = 10_000) -> None:
        self._data: cachetools.TLRUCache[str, tuple[str, float | None]] = cachetools.TLRUCache(max_items, _expiry)

    async def get(self, key: str) -> str | None:
        entry = self._data.get(key)
        return None if entry is None else entry[0]

    async def set(self, key: str, raw: str, ttl: float | None) -> None:
        self._data[key] = (raw, ttl)

    async def delete(self, key: str) -> None:
        self._data.pop(key, None)

    async def close(self) -> None:
        self._data.clear()


class RedisStore:
    """Shared store on Redis; TTLs are set with millisecond precision (``PX``).

    While Redis cannot be reached, reads are misses and writes are dropped (see the module doc).
    """

    def __init__(self, url: str, key_prefix: str = "", logger: Logger | None = None) -> None:
        import redis.asyncio as redis
        from redis.exceptions import ConnectionError, ReadOnlyError, TimeoutError

        self._client = redis.Redis.from_url(url)
        self._prefix = key_prefix
        #: Redis away (refused, reset, timed out, loading) or a replica refusing writes in a failover
        self._unreachable = (ConnectionError, TimeoutError, ReadOnlyError, OSError)
        self._outage = Outage(logger or plugin_logger("cache"), "The Redis cache")

    def _away(self, exc: Exception) -> bool:
        """Whether ``exc`` means Redis cannot be reached (then: a miss, or a dropped write)."""
        if isinstance(exc, RuntimeError):  # uvloop: redis-py writing to a connection reset under it
            return "closed" in str(exc)
        return isinstance(exc, self._unreachable)

    def _failed(self, exc: Exception) -> None:
        self._outage.failed(exc, "reads are misses and writes are dropped until it is back")

    async def get(self, key: str) -> str | None:
        try:
            raw = await self._client.get(self._prefix + key)
        except Exception as exc:
            if not self._away(exc):
                raise
            self._failed(exc)
            return None
        self._outage.ok()
        return None if raw is None else raw.decode() if isinstance(raw, bytes) else str(raw)

    async def set(self, key: str, raw: str, ttl: float | None) -> None:
        px = None if ttl is None else max(1, round(ttl * 1000))
        await self._write(self._client.set(self._prefix + key, raw, px=px))

    async def delete(self, key: str) -> None:
        await self._write(self._client.delete(self._prefix + key))

    async def _write(self, call: Awaitable[Any]) -> None:
        """A write that an outage drops (logged once per outage) instead of failing the request."""
        try:
            await call
        except Exception as exc:
            if not self._away(exc):
                raise
            self._failed(exc)
            return
        self._outage.ok()

    async def close(self) -> None:
        await self._client.aclose()


def _check_ttl(ttl: float | None, what: str) -> float | None:
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0 or math.isinf(ttl):
        raise ValueError(f"{what}: ttl must be a positive number of seconds, not {ttl!r}")
    return float(ttl)


class PluginCache:
    """A ``CacheService`` whose keys live under the plugin's namespace."""

    def __init__(self, store: CacheStore, plugin_id: str, default_ttl: float | None = None) -> None:
        self._store = store
        self._plugin_id = plugin_id
        self._ns = plugin_id + ":"
        self._default_ttl = _check_ttl(default_ttl, f"cache of plugin '{plugin_id}'")

    def _key(self, key: str) -> str:
        if not isinstance(key, str) or not key:
            raise ValueError(f"cache of plugin '{self._plugin_id}': key must be a non-empty string, not {key!r}")
        return self._ns + key

    async def get(self, key: str) -> Any | None:
        raw = await self._store.get(self._key(key))
        instruments.cache_lookup(self._plugin_id, raw is not None)
        return None if raw is None else json.loads(raw)

    async def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        full = self._key(key)
        ttl = _check_ttl(ttl, f"cache key {key!r} of plugin '{self._plugin_id}'")
        try:
            raw = json.dumps(value, allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"cache key {key!r} of plugin '{self._plugin_id}': value of type "
                f"{type(value).__name__} is not JSON-compatible ({exc})"
            ) from None
        await self._store.set(full, raw, ttl if ttl is not None else self._default_ttl)

    async def delete(self, key: str) -> None:
        await self._store.delete(self._key(key))

    def with_options(self, *, default_ttl: float | None = None) -> CacheService:
        return PluginCache(self._store, self._plugin_id, default_ttl)


class CacheSettings(msgspec.Struct, forbid_unknown_fields=True, rename="camel", frozen=True):
    """``backend.cache``; see the module doc."""

    store: Literal["memory", "redis"] = "memory"
    connection: str | None = None
    default_ttl: float | None = None
    key_prefix: str = ""
    max_items: int = 10_000
    #: an ACL user per plugin (``services.cache_users``); ``None``: when the kernel's login may make them
    plugin_users: bool | None = None


def read_cache_settings(config: ConfigReader) -> CacheSettings:
    """``backend.cache``, typed; a mistake is a ``ConfigError`` naming the key."""
    store = config.get_optional("backend.cache.store")
    if store is not None and store not in ("memory", "redis"):
        raise ConfigError(f"Invalid config: backend.cache.store must be 'memory' or 'redis', not {store!r}")
    settings = read_section(config, "backend.cache", CacheSettings)
    if settings.store == "redis" and not settings.connection:
        raise ConfigError("Invalid config: backend.cache.connection (a Redis URL) is required for store 'redis'")
    return settings


def create_store(config: ConfigReader, logger: Logger | None = None) -> CacheStore:
    """The store ``backend.cache`` asks for; ``logger`` tells when Redis goes away and comes back."""
    settings = read_cache_settings(config)
    if settings.store == "redis":
        assert settings.connection is not None
        return RedisStore(settings.connection, settings.key_prefix, logger)
    return MemoryStore(settings.max_items)


def create_cache(config: ConfigReader, plugin_id: str, store: CacheStore | None = None) -> PluginCache:
    """The cache of ``plugin_id``, on ``store`` or on the configured one."""
    return PluginCache(store or create_store(config), plugin_id, read_cache_settings(config).default_ttl)


@create_service_factory(
    core_services.cache,
    {
        "config": core_services.root_config,
        "meta": core_services.plugin_metadata,
        "lifecycle": core_services.lifecycle,
        "logger": core_services.logger,
    },
)
def _cache(config: RootConfig, meta: PluginMetadata, lifecycle: Lifecycle, logger: Logger) -> CacheService:
    store = create_store(config, logger)
    lifecycle.add_shutdown_hook(store.close, label="close cache")
    return create_cache(config, meta.plugin_id, store)


FACTORIES = [_cache]

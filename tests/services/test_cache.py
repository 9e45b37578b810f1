"""kernel_services.cache: the same suite on the in-process store and on Redis, plus Redis shared by two workers."""

from __future__ import annotations

import concurrent.futures
import math
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aredis

from kernel.api import ConfigError
from kernel.testing import KernelProcess, make_package, wait_for, wait_for_async
from kernel_services.cache import CacheStore, MemoryStore, PluginCache, RedisStore, create_cache, create_store
from tests import plugins
from tests.services.conftest import REDIS_PREFIX, REDIS_URL, config_of, kernel_config

pytestmark = pytest.mark.usefixtures("engines_cleanup")

#: short enough to wait out, long enough that a read right after the write comes before it
TTL = 0.5


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[CacheStore]:
    s: CacheStore = MemoryStore() if request.param == "memory" else RedisStore(REDIS_URL, REDIS_PREFIX)
    yield s
    await s.close()


async def test_set_get_delete_round_trip(store: CacheStore) -> None:
    cache = PluginCache(store, "alpha")
    value = {"a": [1, 2.5, "x", None, True], "nested": {"k": "v"}}
    assert await cache.get("missing") is None
    await cache.set("doc", value)
    assert await cache.get("doc") == value
    await cache.set("doc", "replaced")
    assert await cache.get("doc") == "replaced"
    await cache.delete("doc")
    assert await cache.get("doc") is None
    await cache.delete("doc")  # deleting a missing key is fine


async def _gone(*entries: tuple[PluginCache, str]) -> bool:
    """Whether every (cache, key) has no value now."""
    for cache, key in entries:
        if await cache.get(key) is not None:
            return False
    return True


async def test_ttl_expiry(store: CacheStore) -> None:
    cache = PluginCache(store, "alpha")
    await cache.set("long", 2, ttl=30)
    await cache.set("forever", 3)
    await cache.set("short", 1, ttl=TTL)
    assert await cache.get("short") == 1  # there before its ttl
    await wait_for_async(lambda: _gone((cache, "short")), 10, "'short' outlived its ttl")
    assert await cache.get("short") is None
    assert await cache.get("long") == 2
    assert await cache.get("forever") == 3


async def test_default_ttl_from_with_options_and_config(store: CacheStore) -> None:
    short = PluginCache(store, "alpha").with_options(default_ttl=TTL)
    await short.set("b", "y", ttl=30)  # an explicit ttl wins
    configured = create_cache(config_of(cache={"defaultTtl": TTL}), "beta", store)
    await short.set("a", "x")
    await configured.set("c", "z")
    assert await short.get("a") == "x" and await configured.get("c") == "z"  # there before the default ttl
    await wait_for_async(lambda: _gone((short, "a"), (configured, "c")), 10, "values outlived the default ttl")
    assert await short.get("a") is None
    assert await configured.get("c") is None
    assert await short.get("b") == "y"


async def test_namespaces_isolate_plugins(store: CacheStore) -> None:
    a, b = PluginCache(store, "alpha"), PluginCache(store, "beta")
    await a.set("shared-name", "from alpha")
    assert await b.get("shared-name") is None
    await b.set("shared-name", "from beta")
    assert await a.get("shared-name") == "from alpha"
    await b.delete("shared-name")
    assert await a.get("shared-name") == "from alpha"
    # with_options keeps the namespace
    assert await a.with_options(default_ttl=5).get("shared-name") == "from alpha"


@pytest.mark.parametrize("bad", [{1, 2}, object(), b"bytes", math.nan, {"k": Path("/")}])
async def test_non_json_values_are_rejected_naming_the_key(store: CacheStore, bad: object) -> None:
    cache = PluginCache(store, "alpha")
    with pytest.raises(TypeError, match=r"cache key 'the-key' of plugin 'alpha'.*not JSON-compatible"):
        await cache.set("the-key", bad)
    assert await cache.get("the-key") is None


async def test_invalid_keys_and_ttls(store: CacheStore) -> None:
    cache = PluginCache(store, "alpha")
    with pytest.raises(ValueError, match="non-empty string"):
        await cache.set("", 1)
    for ttl in (0, -1, math.inf, True):
        with pytest.raises(ValueError, match="ttl must be a positive number"):
            await cache.set("k", 1, ttl=ttl)
    with pytest.raises(ValueError, match="ttl must be a positive number"):
        cache.with_options(default_ttl=-5)


async def test_redis_keys_are_prefixed_json_with_px_ttl() -> None:
    store = create_store(config_of(cache={"store": "redis", "connection": REDIS_URL, "keyPrefix": REDIS_PREFIX}))
    raw = aredis.Redis.from_url(REDIS_URL)
    try:
        await create_cache(config_of(), "gamma", store).set("k", {"v": 1}, ttl=10)
        assert await raw.get(f"{REDIS_PREFIX}gamma:k") == b'{"v":1}'
        assert 0 < await raw.pttl(f"{REDIS_PREFIX}gamma:k") <= 10_000
    finally:
        await raw.aclose()
        await store.close()


def test_unknown_store_is_an_error() -> None:
    with pytest.raises(ConfigError, match="backend.cache.store must be 'memory' or 'redis'"):
        create_store(config_of(cache={"store": "memcache"}))
    with pytest.raises(ConfigError, match="connection .* is required for store 'redis'"):
        create_store(config_of(cache={"store": "redis"}))
    with pytest.raises(ConfigError, match=r"backend\.cache\.maxItems"):
        create_store(config_of(cache={"maxItems": "many"}))


# ----------------------------------------------------------------------------- in real workers


def test_redis_cache_is_shared_by_two_replicas(tmp_path: Path) -> None:
    make_package(
        tmp_path,
        "kernel-test-shared",
        {"test_shared_cache": plugins.SHARED_CACHE},
        {"shared": "test_shared_cache:plugin"},
    )
    config = kernel_config(
        cache={"store": "redis", "connection": REDIS_URL, "keyPrefix": REDIS_PREFIX},
        workers={"replicas": 2, "heartbeatInterval": 0.2, "heartbeatTimeout": 3},
    )
    with KernelProcess(config, paths=[tmp_path]) as k, httpx.Client(base_url=k.url, timeout=10) as c:
        setter = c.post("/api/shared/put", params={"k": "greeting", "v": "hello"}).json()["pid"]

        def readers() -> set[int]:
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                answers = list(pool.map(lambda _: c.get("/api/shared/get", params={"k": "greeting"}), range(4)))
            assert all(a.json()["value"] == {"v": "hello"} for a in answers), [a.text for a in answers]
            pids = {a.json()["pid"] for a in answers}
            return pids if setter not in pids or len(pids) > 1 else set()

        pids = wait_for(readers, 10, "no other worker read the value", ignore=(httpx.HTTPError, OSError))
        assert pids - {setter}, "a worker other than the setter must have read the value"

"""kernel.gateway.ratelimit_stores: the Redis counts live under the deployment's prefix.

Three kernels on the machine's Redis: two of one deployment (the same ``backend.cache.keyPrefix``)
and one of another. The first two share one count per client; the third counts apart.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis

from kernel.testing import KernelProcess
from tests.gateway.edge_support import edge_config, edge_site

REDIS_URL = "redis://127.0.0.1:6379/0"
LIMIT = 4


@pytest.fixture(scope="module")
def prefixes() -> Iterator[tuple[str, str]]:
    """Two deployments' prefixes no other run uses; their keys are deleted afterwards (never FLUSHALL)."""
    run = uuid.uuid4().hex[:8]
    pair = (f"kt:{run}:blue:", f"kt:{run}:green:")
    yield pair
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = [k for p in pair for k in client.scan_iter(match=p + "*")]
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(scope="module")
def kernels(tmp_path_factory: pytest.TempPathFactory, prefixes: tuple[str, str]) -> Iterator[list[KernelProcess]]:
    site = edge_site(tmp_path_factory.mktemp("site"))
    blue, green = prefixes
    made = []
    for prefix in (blue, blue, green):
        config = edge_config(
            trustProxy=True,
            rateLimit={
                "window": "1m",
                "incomingRequestLimit": LIMIT,
                "store": {"type": "redis", "connection": REDIS_URL},
            },
            cache={"store": "redis", "connection": REDIS_URL, "keyPrefix": prefix},
        )
        made.append(KernelProcess(config, paths=[site]))
    try:
        for k in made:
            k.start(wait=False)
        for k in made:
            k.wait_ready(90)  # three kernels starting at once on a shared machine
        yield made
    finally:
        for k in made:
            k.stop()


def _statuses(kernel: KernelProcess, ip: str, n: int) -> list[int]:
    with httpx.Client(base_url=kernel.url, timeout=20, headers={"X-Forwarded-For": ip}) as c:
        return [c.get("/api/edge/small").status_code for _ in range(n)]


def test_one_deployment_shares_its_counts_and_another_counts_apart(
    kernels: list[KernelProcess], prefixes: tuple[str, str]
) -> None:
    blue_one, blue_two, green = kernels
    ip = "198.18.7.77"
    assert _statuses(blue_one, ip, 3) == [200] * 3
    # the same deployment: the count of the first instance goes on (4 of 4, then refused)
    assert _statuses(blue_two, ip, 3) == [200, 429, 429]
    # another deployment on the same Redis: its own count, from zero
    assert _statuses(green, ip, LIMIT) == [200] * LIMIT
    assert _statuses(green, ip, 1) == [429]
    client = redis.Redis.from_url(REDIS_URL)
    try:
        for prefix in prefixes:
            keys = [k.decode() for k in client.scan_iter(match=prefix + "kernel:ratelimit:*")]
            assert keys and all(ip in k for k in keys), keys
        # nothing counted under the unprefixed name of before
        assert not list(client.scan_iter(match=f"kernel:ratelimit:*{ip}*"))
    finally:
        client.close()

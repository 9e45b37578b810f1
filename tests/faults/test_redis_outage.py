"""Redis going away and coming back: under the cache (misses, requests go on) and under the rate limit
(503 by default, or uncounted with ``passOnStoreError``), both back without a restart.

The kernel reaches Redis through ``Relay``s the test cuts (every connection reset, new ones refused)
and restores; the shared server itself never stops. One relay per use, so each is cut alone.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kernel.testing import KernelProcess, wait_for
from tests.conftest import assert_error_shape, base_config
from tests.faults.conftest import REDIS_PORT, children, lines_with
from tests.faults.relay import Relay

LIMIT = 3  # requests per client per minute to the echo plugin


@pytest.fixture(scope="module")
def cache_relay() -> Iterator[Relay]:
    with Relay(REDIS_PORT) as r:
        yield r


@pytest.fixture(scope="module")
def limit_relay() -> Iterator[Relay]:
    with Relay(REDIS_PORT) as r:
        yield r


def _config(limit_relay: Relay, *, pass_on_store_error: bool, cache_relay: Relay | None = None) -> dict[str, Any]:
    config = base_config(requestTimeout=10)
    backend: dict[str, Any] = config["backend"]  # type: ignore[assignment]
    backend["trustProxy"] = True  # the client is X-Forwarded-For: localhost is never limited
    backend["rateLimit"] = {
        "global": False,
        "plugin": {"echo": {"incomingRequestLimit": LIMIT, "window": "1m"}},
        "passOnStoreError": pass_on_store_error,
        "store": {"type": "redis", "connection": f"redis://127.0.0.1:{limit_relay.port}/0"},
    }
    if cache_relay is not None:
        backend["cache"] = {
            "store": "redis",
            "connection": f"redis://127.0.0.1:{cache_relay.port}/0",
            "keyPrefix": f"kt:faults:{uuid.uuid4().hex[:8]}:",
        }
    return config


@pytest.fixture(scope="module")
def kernel(faults_site: Path, cache_relay: Relay, limit_relay: Relay) -> Iterator[KernelProcess]:
    """The cache and a fail-closed rate limit (the default) on Redis."""
    config = _config(limit_relay, pass_on_store_error=False, cache_relay=cache_relay)
    with KernelProcess(config, paths=[faults_site]) as k:
        yield k


@pytest.fixture
def client(kernel: KernelProcess, cache_relay: Relay, limit_relay: Relay) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=kernel.url, timeout=30) as c:
        yield c
    cache_relay.restore()
    limit_relay.restore()


def _address() -> str:
    """A client address no other run uses: its count in the shared Redis is its own."""
    a, b, c = uuid.uuid4().bytes[:3]
    return f"10.{a}.{b}.{c}"


def _echo(client: httpx.Client, address: str) -> httpx.Response:
    return client.get("/api/echo/pid", headers={"X-Forwarded-For": address})


def test_redis_away_turns_the_cache_into_misses_and_it_comes_back(
    kernel: KernelProcess, cache_relay: Relay, client: httpx.Client
) -> None:
    first = client.get("/api/memo/answer").json()
    assert client.get("/api/memo/answer").json()["hit"] is True  # kept in Redis
    assert client.put("/api/memo/cache", params={"k": "kept", "v": "before"}).status_code == 200
    pid = first["pid"]

    cache_relay.cut()
    answers = [client.get("/api/memo/answer") for _ in range(10)]
    assert [r.status_code for r in answers] == [200] * 10  # requests go on: computed, not read
    assert all(r.json()["value"] == 42 and r.json()["hit"] is False for r in answers)
    assert answers[-1].json()["computed"] == answers[0].json()["computed"] + 9
    assert client.get("/api/memo/cache", params={"k": "kept"}).json()["value"] is None  # a miss
    assert client.put("/api/memo/cache", params={"k": "lost", "v": "during"}).status_code == 200  # dropped

    cache_relay.restore()
    back = wait_for(lambda: client.get("/api/memo/cache", params={"k": "kept"}).json()["value"], 10, kernel.output)
    assert back == "before"  # what Redis held is read again
    assert client.get("/api/memo/answer").json() | {"computed": 0} == {
        "pid": pid,
        "value": 42,
        "hit": True,
        "computed": 0,
    }
    assert client.get("/api/memo/cache", params={"k": "lost"}).json()["value"] is None
    assert [p.pid for p in children(kernel, "worker", "memo")] == [pid]  # no restart
    # logged once when it went, once when it came back: not at every one of the calls in between
    assert len(lines_with(kernel, "The Redis cache is unavailable (")) == 1, kernel.output()
    assert len(lines_with(kernel, "The Redis cache is back after")) == 1, kernel.output()
    assert "Traceback" not in kernel.output()


def test_redis_away_makes_the_rate_limit_fail_closed_with_503_and_it_comes_back(
    kernel: KernelProcess, limit_relay: Relay, client: httpx.Client
) -> None:
    counted, fresh = _address(), _address()
    assert [_echo(client, counted).status_code for _ in range(LIMIT + 1)] == [200] * LIMIT + [429]
    gateways = {p.pid for p in children(kernel, "gateway")}

    limit_relay.cut()
    for address in (fresh, counted, fresh):
        resp = _echo(client, address)
        body = assert_error_shape(resp, 503, "ServiceUnavailableError")
        assert body["error"]["message"] == "The rate limit store is unavailable"
        assert resp.headers["retry-after"] == "1"
    assert client.get("/.kernel/health/v1/readiness").status_code == 200  # probes are never limited
    assert client.get("/api/memo/answer").status_code == 200  # a plugin without a limit is not touched

    limit_relay.restore()
    assert wait_for(lambda: _echo(client, fresh).status_code == 200, 10, kernel.output)
    assert _echo(client, counted).status_code == 429  # its count survived the outage in Redis
    assert {p.pid for p in children(kernel, "gateway")} == gateways
    assert len(lines_with(kernel, "the rate limit store is unavailable (")) == 1, kernel.output()
    assert "requests get 503 until it is back" in kernel.output()
    assert len(lines_with(kernel, "the rate limit store is back after")) == 1, kernel.output()


def test_with_pass_on_store_error_requests_pass_uncounted_while_redis_is_away(
    faults_site: Path, limit_relay: Relay
) -> None:
    config = _config(limit_relay, pass_on_store_error=True)
    with KernelProcess(config, paths=[faults_site]) as k, httpx.Client(base_url=k.url, timeout=30) as c:
        try:
            limit_relay.cut()
            away = _address()
            assert [_echo(c, away).status_code for _ in range(LIMIT + 2)] == [200] * (LIMIT + 2)  # uncounted
        finally:
            limit_relay.restore()
        again = _address()
        wait_for(lambda: _echo(c, again).status_code == 200, 10, k.output)  # counted: the first of LIMIT
        assert [_echo(c, again).status_code for _ in range(LIMIT)] == [200] * (LIMIT - 1) + [429]
        assert len(lines_with(k, "the rate limit store is unavailable (")) == 1, k.output()
        assert "requests pass uncounted until it is back" in k.output()

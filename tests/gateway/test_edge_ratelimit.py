"""``backend.rateLimit``: per client (address behind a trusted proxy, or principal), 429 with Retry-After, Redis shared."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from kernel.errors import KernelError
from kernel.gateway.middleware.forwarded import client_address, trust_function
from kernel.gateway.middleware.ratelimit import RateLimitMiddleware, rules_of
from kernel.gateway.ratelimit_stores import MemoryStore
from kernel.scope_keys import ADMISSION
from kernel.settings import PluginRateLimit, RateLimitSettings
from kernel.testing import KernelProcess, wait_for
from tests.conftest import TOKEN, assert_error_shape
from tests.gateway.edge_support import edge_config, edge_site, json_lines

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelProcess]:
    config = edge_config(
        trustProxy=True,
        rateLimit={"window": "1m", "incomingRequestLimit": 3, "plugin": {"echo": {"incomingRequestLimit": 1}}},
    )
    k = KernelProcess(config, paths=[edge_site(tmp_path_factory.mktemp("site"))]).start()
    yield k
    k.stop()


def _get(kernel: KernelProcess, path: str, ip: str, token: str | None = None) -> httpx.Response:
    headers = {"X-Forwarded-For": f"{ip}, 10.0.0.1"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    with httpx.Client(base_url=kernel.url, timeout=20) as c:
        return c.get(path, headers=headers)


def test_over_the_limit_is_429_with_retry_after(kernel: KernelProcess) -> None:
    ip = "203.0.113.10"
    assert [_get(kernel, "/api/edge/small", ip).status_code for _ in range(3)] == [200, 200, 200]
    resp = _get(kernel, "/api/edge/small", ip)
    body = assert_error_shape(resp, 429, "TooManyRequestsError")
    assert body["error"]["message"] == "Too many requests, please try again later"
    assert 1 <= int(resp.headers["retry-after"]) <= 60
    assert resp.headers["x-content-type-options"] == "nosniff" and resp.headers["x-request-id"]
    # another client (by X-Forwarded-For, trusted) still passes; so does the health check
    assert _get(kernel, "/api/edge/small", "203.0.113.11").status_code == 200
    assert _get(kernel, "/.kernel/health/v1/readiness", ip).status_code == 200


def test_a_principal_counts_apart_from_its_address(kernel: KernelProcess) -> None:
    ip = "203.0.113.20"
    for _ in range(3):
        assert _get(kernel, "/api/edge/small", ip).status_code == 200
    assert _get(kernel, "/api/edge/small", ip).status_code == 429
    # the same address with credentials: the service principal has its own count
    assert _get(kernel, "/api/edge/private/whoami", ip, TOKEN).json()["subject"] == "external:ci-bot"


def test_refused_credentials_count_for_the_address(kernel: KernelProcess) -> None:
    ip = "203.0.113.30"
    statuses = [_get(kernel, "/api/edge/private/whoami", ip, f"guess-{i}").status_code for i in range(4)]
    assert statuses == [401, 401, 401, 429]


def test_a_plugins_own_limit_adds_to_the_global_one(kernel: KernelProcess) -> None:
    ip = "203.0.113.40"
    assert _get(kernel, "/api/echo/pid", ip).status_code == 200
    assert_error_shape(_get(kernel, "/api/echo/pid", ip), 429, "TooManyRequestsError")
    assert _get(kernel, "/api/edge/small", ip).status_code == 200  # edge has only the global limit


def test_localhost_is_on_the_default_allow_list(kernel: KernelProcess) -> None:
    with httpx.Client(base_url=kernel.url, timeout=20) as c:  # no X-Forwarded-For: the client is 127.0.0.1
        assert {c.get("/api/echo/pid").status_code for _ in range(5)} == {200}


def test_rules_take_the_global_keys_a_plugin_leaves_out() -> None:
    settings = RateLimitSettings(
        global_=False, window=10, incoming_request_limit=7, plugin={"a": PluginRateLimit(incoming_request_limit=2)}
    )
    global_rule, plugins = rules_of(settings)
    assert global_rule is None
    assert (plugins["a"].limit, plugins["a"].window, plugins["a"].prefix) == (2, 10, "a:")
    assert "127.0.0.1" in plugins["a"].allow


async def test_the_memory_store_counts_in_fixed_windows() -> None:
    now = [100.0]
    store = MemoryStore(clock=lambda: now[0])
    assert await store.hit("k", 10) == (1, 10.0)
    now[0] = 104.0
    assert await store.hit("k", 10) == (2, 6.0)
    await store.undo("k")
    assert await store.hit("k", 10) == (2, 6.0)
    now[0] = 110.0  # the window ended: a new one starts
    assert await store.hit("k", 10) == (1, 10.0)


@pytest.mark.parametrize(
    ("trust", "forwarded", "client"),
    [
        (True, ["1.1.1.1", "10.0.0.2"], "1.1.1.1"),  # every hop trusted: the leftmost
        (False, ["1.1.1.1"], "127.0.0.1"),
        (1, ["1.1.1.1", "10.0.0.2"], "10.0.0.2"),  # one hop: the proxy's peer
        (2, ["1.1.1.1", "10.0.0.2"], "1.1.1.1"),
        (["loopback", "10.0.0.0/8"], ["1.1.1.1", "10.0.0.2"], "1.1.1.1"),
        (["loopback"], ["1.1.1.1", "10.0.0.2"], "10.0.0.2"),  # 10.0.0.2 is not trusted: it is the client
        (True, ["not-an-ip", "10.0.0.2"], "10.0.0.2"),  # trust stops at a hop that is no address
    ],
)
def test_the_client_behind_proxies_as_express(trust: bool | int | list[str], forwarded: list[str], client: str) -> None:
    assert client_address("127.0.0.1", forwarded, trust_function(trust)) == client


# -- two gateway processes sharing the counts in Redis ---------------------------------------------


@pytest.fixture(scope="module")
def shared_kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelProcess]:
    config = edge_config(
        trustProxy=True,
        rateLimit={"window": 60000, "incomingRequestLimit": 6, "store": {"type": "redis", "connection": REDIS_URL}},
        logging={"format": "json"},
    )
    config["backend"]["gateway"]["processes"] = 2
    k = KernelProcess(config, paths=[edge_site(tmp_path_factory.mktemp("site"))]).start()
    yield k
    k.stop()


def test_two_gateway_processes_share_the_count_in_redis(shared_kernel: KernelProcess) -> None:
    ip = f"198.51.100.{int.from_bytes(os.urandom(1), 'big')}"
    marker = os.urandom(6).hex()
    statuses = []
    for i in range(30):  # a new connection each time: the two processes take turns accepting them
        with httpx.Client(base_url=shared_kernel.url, timeout=20) as c:
            headers = {"X-Forwarded-For": ip, "X-Request-Id": f"{marker}-{i}"}
            statuses.append(c.get("/api/edge/small", headers=headers).status_code)
    # one count for both processes: each process on its own would have let 6 through
    assert statuses == [200] * 6 + [429] * 24

    def served_by() -> dict[int, list[int]]:
        pids: dict[int, list[int]] = {}
        for line in json_lines(shared_kernel):
            if str(line.get("request_id", "")).startswith(marker) and line.get("logger") == "kernel.access":
                pids.setdefault(line["pid"], []).append(line["status"])
        return pids

    pids = wait_for(lambda: len(served_by()) == 2 and served_by(), 10, lambda: f"one process only: {served_by()}")
    assert all(429 in answered for answered in pids.values())  # each refused requests the other let through


def _dispatcher(status: int) -> Any:
    """An app that, like the dispatcher, runs the admission check and then answers ``status``."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await scope[ADMISSION](scope, "p", None)
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return app


async def _call(mw: RateLimitMiddleware) -> int | str:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    try:
        await mw({"type": "http", "client": ("192.0.2.1", 1)}, None, send)  # type: ignore[arg-type]
    except KernelError as exc:
        return exc.name
    return int(sent[0]["status"])


async def test_skipped_answers_do_not_count() -> None:
    failed = RateLimitMiddleware(
        _dispatcher(500),
        settings=RateLimitSettings(incoming_request_limit=2, skip_failed_requests=True),
        store=MemoryStore(),
    )
    assert [await _call(failed) for _ in range(5)] == [500] * 5
    ok = RateLimitMiddleware(
        _dispatcher(200),
        settings=RateLimitSettings(incoming_request_limit=2, skip_failed_requests=True),
        store=MemoryStore(),
    )
    assert [await _call(ok) for _ in range(3)] == [200, 200, "TooManyRequestsError"]


class _BrokenStore(MemoryStore):
    async def hit(self, key: str, window: float) -> tuple[int, float]:
        raise ConnectionError("redis is down")


async def test_a_failing_store_is_503_unless_told_to_pass() -> None:
    strict = RateLimitMiddleware(_dispatcher(200), settings=RateLimitSettings(), store=_BrokenStore())
    assert await _call(strict) == "ServiceUnavailableError"
    lenient = RateLimitMiddleware(
        _dispatcher(200), settings=RateLimitSettings(pass_on_store_error=True), store=_BrokenStore()
    )
    assert await _call(lenient) == 200

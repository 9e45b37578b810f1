"""PostgreSQL going away and coming back under a plugin's ``core.database``: 503s, then recovery, nothing lost.

The kernel reaches PostgreSQL through a ``Relay`` the test cuts (every connection reset, new ones
refused) and restores; the shared server itself never stops.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from kernel.testing import KernelProcess, wait_for
from tests.conftest import assert_error_shape, base_config
from tests.faults.conftest import PG_ADMIN_DSN, PG_PORT, children, lines_with
from tests.faults.relay import Relay

REQUEST_TIMEOUT = 10  # a request that hung on the database would be a 504 at this deadline, not a 503
UNAVAILABLE = "The PostgreSQL database of plugin 'ledger' is unavailable"


@pytest.fixture(scope="module")
def relay() -> Iterator[Relay]:
    with Relay(PG_PORT) as r:
        yield r


@pytest.fixture(scope="module")
def kernel(faults_site: Path, relay: Relay, pg_prefix: str) -> Iterator[KernelProcess]:
    config = base_config(requestTimeout=REQUEST_TIMEOUT)
    config["backend"]["database"] = {  # type: ignore[index]
        "client": "pg",
        "connection": {"host": "127.0.0.1", "port": relay.port, "user": "postgres", "database": "test"},
        "prefix": pg_prefix,
    }
    with KernelProcess(config, paths=[faults_site]) as k:
        yield k


@pytest.fixture
def client(kernel: KernelProcess, relay: Relay) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=kernel.url + "/api/ledger", timeout=30) as c:
        yield c
    relay.restore()  # a failed test must not leave the next one without its database


def test_postgres_away_is_503_and_the_plugin_recovers_without_a_restart(
    kernel: KernelProcess, relay: Relay, client: httpx.Client
) -> None:
    written = [f"before-{i}" for i in range(10)]
    for body in written:
        assert client.post("/entries", params={"body": body}).status_code == 200
    pid = client.get("/entries").json()["pid"]
    workers = {p.pid for p in children(kernel, "worker", "ledger")}
    assert workers == {pid}

    relay.cut()
    for method, path, params in [
        ("GET", "/entries", {}),
        ("POST", "/entries", {"body": "during"}),
        ("POST", "/entries", {"body": "during-tx", "tx": "1"}),
        ("GET", "/entries", {}),
    ]:
        resp = client.request(method, path, params=params)
        body = assert_error_shape(resp, 503, "ServiceUnavailableError")  # not 500, not a 504 at the deadline
        assert body["error"]["message"].startswith(UNAVAILABLE), body
        assert resp.headers["retry-after"] == "1"
    assert "127.0.0.1" not in body["error"]["message"]  # the cause, not the server's address

    relay.restore()
    state = wait_for(lambda: _ok(client.get("/entries")), 10, kernel.output)
    assert state.json()["pid"] == pid  # the same worker: no restart
    assert sorted(state.json()["entries"]) == sorted(written)  # every acknowledged write is there
    assert client.post("/entries", params={"body": "after", "tx": "1"}).status_code == 200
    assert sorted(client.get("/entries").json()["entries"]) == sorted([*written, "after"])
    assert {p.pid for p in children(kernel, "worker", "ledger")} == workers

    # the outage is logged once when it starts and once when it ends, not at every call
    assert len(lines_with(kernel, UNAVAILABLE + " (")) == 1, kernel.output()
    assert len(lines_with(kernel, "The PostgreSQL database of plugin 'ledger' is back after")) == 1, kernel.output()
    assert "Traceback" not in kernel.output()


def _ok(resp: httpx.Response) -> httpx.Response | None:
    return resp if resp.status_code == 200 else None


async def _running(query: str) -> int:
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        sql = "SELECT count(*) FROM pg_stat_activity WHERE query = $1 AND state = 'active'"
        return int(await conn.fetchval(sql, query))
    finally:
        await conn.close()


def test_a_query_in_flight_when_postgres_goes_away_is_503(
    kernel: KernelProcess, relay: Relay, client: httpx.Client
) -> None:
    pid = client.get("/entries").json()["pid"]
    answer: list[httpx.Response] = []
    held = threading.Thread(target=lambda: answer.append(client.get("/sleep", params={"s": 5})))
    held.start()
    wait_for(lambda: asyncio.run(_running("SELECT pg_sleep($1)")), 10, "the query never reached PostgreSQL")
    relay.cut()
    held.join(REQUEST_TIMEOUT)
    assert answer, "no answer"
    body = assert_error_shape(answer[0], 503, "ServiceUnavailableError")
    assert body["error"]["message"].startswith(UNAVAILABLE), body
    relay.restore()
    assert wait_for(lambda: _ok(client.get("/entries")), 10, kernel.output).json()["pid"] == pid

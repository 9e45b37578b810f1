"""Outages with nothing cached yet, the flerps TTL expiring, and a burst of requests sharing one flerps call.

The kernel starts while neither upstream is up (their ports are chosen, nothing listens); the
flerps TTL is one second.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest
from frobs_support import FLERPS, FROBS, FakeApi, assert_error, expected, ok, start_kernel, summary

from kernel.testing import KernelProcess, stays, wait_for

TTL = 1.0
BURST = 8


@pytest.fixture(scope="module")
def frobs() -> Iterator[FakeApi]:
    api = FakeApi("/list", FROBS)  # not started: the tests start it
    yield api
    api.stop()


@pytest.fixture(scope="module")
def flerps() -> Iterator[FakeApi]:
    api = FakeApi("/flerp-batch", FLERPS)
    yield api
    api.stop()


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory, frobs: FakeApi, flerps: FakeApi) -> Iterator[KernelProcess]:
    config = {
        "frobsAggregator": {
            "frobsUrl": frobs.url,
            "flerpsUrl": flerps.url,
            "timeoutSeconds": 5,
            "flerpsCacheTtlSeconds": TTL,
        }
    }
    k = start_kernel(tmp_path_factory.mktemp("frobs-outages"), config)
    yield k
    k.stop()


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_both_down_with_nothing_cached_is_503_naming_both(kernel: KernelProcess) -> None:
    message = assert_error(summary(kernel), 503, "ServiceUnavailableError")
    assert message == "No upstream answered and nothing is cached: frobs unreachable; flerps unreachable"


def test_one_down_with_nothing_cached_answers_the_other_and_null(kernel: KernelProcess, frobs: FakeApi) -> None:
    frobs.start()
    body = ok(kernel)
    assert body["frobs"] == expected(FROBS, "status", "byStatus")
    assert body["flerps"] is None
    assert body["sources"]["flerps"] == {"state": "missing", "fetchedAt": None}
    assert body["sources"]["frobs"]["state"] == "live"
    assert body["partial"] is True and body["errors"] == {"flerps": "unreachable"}
    assert body["summariesServed"] == 1  # the 503 before was not a summary served


def test_flerps_up_then_asked_again_once_the_ttl_expired(kernel: KernelProcess, flerps: FakeApi) -> None:
    flerps.start()
    first = ok(kernel)
    assert first["flerps"] == expected(FLERPS, "kind", "byKind")
    assert first["sources"]["flerps"]["state"] == "live" and first["partial"] is False
    fetched = first["sources"]["flerps"]["fetchedAt"]

    def asked_again() -> bool:
        now = ok(kernel)["sources"]["flerps"]
        return bool(now["state"] == "live" and now["fetchedAt"] != fetched)

    wait_for(asked_again, 10, "flerps were never asked again", interval=0.1)
    assert len(flerps.hits) >= 2


def test_a_burst_after_the_ttl_shares_one_flerps_call(kernel: KernelProcess, frobs: FakeApi, flerps: FakeApi) -> None:
    last = _epoch(ok(kernel)["sources"]["flerps"]["fetchedAt"])
    wait_for(lambda: time.time() > last + TTL + 0.05, 5, "the flerps copy did not expire")  # the TTL is the subject
    frob_hits, flerp_hits = len(frobs.hits), len(flerps.hits)
    flerps.hold()
    try:
        with ThreadPoolExecutor(BURST) as pool:
            answers = [pool.submit(summary, kernel) for _ in range(BURST)]
            # every request of the burst is in the plugin once each has asked frobs (asked every time)
            wait_for(lambda: len(frobs.hits) == frob_hits + BURST, 10, "the burst did not reach the plugin")
            wait_for(lambda: len(flerps.hits) == flerp_hits + 1, 10, "flerps were not asked")
            stays(lambda: len(flerps.hits) == flerp_hits + 1, 0.3, "flerps were asked more than once")
            flerps.release()
            bodies = [a.result().json() for a in answers]
    finally:
        flerps.release()
    assert all(b["partial"] is False for b in bodies), bodies
    assert len({b["sources"]["flerps"]["fetchedAt"] for b in bodies}) == 1  # one answer, shared
    assert len({b["summariesServed"] for b in bodies}) == BURST  # each one counted
    assert len(flerps.hits) == flerp_hits + 1


def test_flerps_failing_after_the_ttl_show_their_last_good_summary(kernel: KernelProcess, flerps: FakeApi) -> None:
    flerps.mode = "broken"
    try:
        body = wait_for(lambda: (b := ok(kernel))["sources"]["flerps"]["state"] == "stale" and b, 10, interval=0.1)
    finally:
        flerps.mode = "ok"
    assert body["errors"] == {"flerps": "answered HTTP 500"} and body["partial"] is True
    assert body["flerps"] == expected(FLERPS, "kind", "byKind")
    assert body["sources"]["frobs"]["state"] == "live"


def test_both_failing_with_last_good_summaries_is_still_200(
    kernel: KernelProcess, frobs: FakeApi, flerps: FakeApi
) -> None:
    flerps.stop()
    frobs.stop()
    try:
        body = wait_for(lambda: (b := ok(kernel))["sources"]["flerps"]["state"] == "stale" and b, 10, interval=0.1)
    finally:
        frobs.start()
        flerps.start()
    assert body["errors"] == {"frobs": "unreachable", "flerps": "unreachable"}
    assert body["sources"]["frobs"]["state"] == "stale"
    assert body["frobs"] == expected(FROBS, "status", "byStatus")
    assert body["flerps"] == expected(FLERPS, "kind", "byKind")
    wait_for(lambda: ok(kernel)["partial"] is False, 10, "the upstreams did not come back", interval=0.1)

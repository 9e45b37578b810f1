"""``GET /api/frobs-aggregator/summary`` in a real kernel, both fake upstreams up at first.

The flerps TTL is an hour here, so after the first summary flerps come from the cache; frobs are
asked every time, and when they fail their last good summary stands in (``stale``).
``test_frobs_aggregator_outages`` covers the cases without a cached copy and TTL expiry.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from frobs_support import FLERPS, FROBS, FakeApi, assert_error, expected, ok, start_kernel, summary

from kernel.testing import KernelProcess, wait_for


@pytest.fixture(scope="module")
def frobs() -> Iterator[FakeApi]:
    api = FakeApi("/list", FROBS).start()
    yield api
    api.stop()


@pytest.fixture(scope="module")
def flerps() -> Iterator[FakeApi]:
    api = FakeApi("/flerp-batch", FLERPS).start()
    yield api
    api.stop()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("frobs-kernel")


@pytest.fixture(scope="module")
def kernel(data_dir: Path, frobs: FakeApi, flerps: FakeApi) -> Iterator[KernelProcess]:
    config = {
        "frobsAggregator": {
            "frobsUrl": frobs.url,
            "flerpsUrl": flerps.url + "/",  # a trailing slash is fine
            "timeoutSeconds": 1,
            "flerpsCacheTtlSeconds": 3600,
        }
    }
    k = start_kernel(data_dir, config)
    yield k
    k.stop()


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _served_in_database(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / "data" / "frobs-aggregator.sqlite") as db:
        (served,) = db.execute("SELECT served FROM summary_counter").fetchone()
    return int(served)


def test_the_first_summary_asks_both_upstreams_concurrently(
    kernel: KernelProcess, frobs: FakeApi, flerps: FakeApi, data_dir: Path
) -> None:
    # each upstream holds its answer until the other one has been asked too: asked one after the
    # other, the first would wait past the plugin's 1 s timeout and the summary would be partial
    frobs.rendezvous = flerps.rendezvous = threading.Barrier(2, timeout=5)
    try:
        before = time.time()
        body = ok(kernel)
        after = time.time()
    finally:
        frobs.rendezvous = flerps.rendezvous = None
    assert body["partial"] is False and body["errors"] == {}, body
    assert body["frobs"] == expected(FROBS, "status", "byStatus")
    assert body["flerps"] == expected(FLERPS, "kind", "byKind")
    assert body["summariesServed"] == 1
    assert set(body) == {"frobs", "flerps", "summariesServed", "sources", "partial", "errors"}
    for name in ("frobs", "flerps"):
        assert body["sources"][name]["state"] == "live"
        assert before - 1 <= _epoch(body["sources"][name]["fetchedAt"]) <= after + 1
    assert frobs.hits == ["/list"] and flerps.hits == ["/flerp-batch"]
    assert _served_in_database(data_dir) == 1


def test_flerps_come_from_the_cache_and_frobs_are_asked_every_time(
    kernel: KernelProcess, frobs: FakeApi, flerps: FakeApi, data_dir: Path
) -> None:
    first = ok(kernel)
    frob_hits, flerp_hits = len(frobs.hits), len(flerps.hits)
    frobs.data = [*FROBS, {"id": "frob-new", "status": "active"}]
    flerps.data = [*FLERPS, {"id": "flerp-new", "kind": "huge"}]
    try:
        body = ok(kernel)
    finally:
        frobs.data, flerps.data = FROBS, FLERPS
    assert len(frobs.hits) == frob_hits + 1 and len(flerps.hits) == flerp_hits
    assert body["frobs"] == expected([*FROBS, {"status": "active"}], "status", "byStatus")  # live: the new frob
    assert body["flerps"] == expected(FLERPS, "kind", "byKind")  # cached: not the new flerp
    assert body["sources"]["flerps"] == {"state": "cached", "fetchedAt": first["sources"]["flerps"]["fetchedAt"]}
    assert body["sources"]["frobs"]["state"] == "live"
    assert body["summariesServed"] == first["summariesServed"] + 1
    assert _served_in_database(data_dir) == body["summariesServed"]


def test_a_flerps_outage_is_hidden_while_the_cached_copy_is_fresh(kernel: KernelProcess, flerps: FakeApi) -> None:
    flerps.stop()
    try:
        body = ok(kernel)
    finally:
        flerps.start()
    assert body["partial"] is False and body["errors"] == {}
    assert body["sources"]["flerps"]["state"] == "cached"
    assert body["flerps"] == expected(FLERPS, "kind", "byKind")


def test_frobs_down_answers_200_with_their_last_good_summary_marked_stale(
    kernel: KernelProcess, frobs: FakeApi
) -> None:
    last_good = ok(kernel)["sources"]["frobs"]["fetchedAt"]
    frobs.stop()
    try:
        resp = summary(kernel)
    finally:
        frobs.start()
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    assert body["partial"] is True
    assert body["errors"] == {"frobs": "unreachable"}
    assert body["sources"]["frobs"] == {"state": "stale", "fetchedAt": last_good}
    assert body["frobs"] == expected(FROBS, "status", "byStatus")
    assert body["flerps"] == expected(FLERPS, "kind", "byKind")
    assert "127.0.0.1" not in resp.text  # the internal address is logged, not answered
    back = ok(kernel)  # the same port serves again: live at once
    assert back["sources"]["frobs"]["state"] == "live" and back["partial"] is False


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("broken", "answered HTTP 500"),
        ("slow", "did not answer within 1s"),
        ("not-json", "answered something that is not a JSON array"),
        ("object", "answered something that is not a JSON array"),
    ],
)
def test_a_failing_frobs_upstream_is_named_under_errors(
    kernel: KernelProcess, frobs: FakeApi, mode: str, reason: str
) -> None:
    frobs.mode = mode
    try:
        resp = summary(kernel)
    finally:
        frobs.mode = "ok"
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["partial"] is True and body["errors"] == {"frobs": reason}
    assert body["sources"]["frobs"]["state"] == "stale"
    assert body["frobs"] == expected(FROBS, "status", "byStatus")
    assert "on fire" not in resp.text and "maintenance" not in resp.text  # the upstream's words stay out


def test_the_upstream_failures_are_logged_with_their_urls(kernel: KernelProcess, frobs: FakeApi) -> None:
    wait_for(lambda: f"{frobs.url}/list" in kernel.output() and "upstream failed" in kernel.output(), 10, kernel.output)
    assert "upstream timed out" in kernel.output() and "upstream unreachable" in kernel.output()


def test_summary_needs_credentials(kernel: KernelProcess, frobs: FakeApi, flerps: FakeApi) -> None:
    hits = len(frobs.hits), len(flerps.hits)
    assert_error(summary(kernel, headers={}), 401, "AuthenticationError")
    assert (len(frobs.hits), len(flerps.hits)) == hits


def test_the_worker_stayed_up_through_every_failure(kernel: KernelProcess) -> None:
    status, body = kernel.readiness()
    assert status == 200, body
    assert ok(kernel)["partial"] is False

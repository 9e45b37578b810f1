"""Limits per plugin: memory (recycle gracefully above the soft limit, kill above the hard one), requests per
worker, and requests in flight per worker with a bounded queue (503 with Retry-After beyond it).
"""

from __future__ import annotations

import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from kernel.settings import WorkerLimits
from kernel.supervisor.children import Child
from kernel.supervisor.limits import check_limits
from kernel.testing import KernelProcess, make_package, wait_for
from tests import plugins
from tests.conftest import base_config


@pytest.fixture
def hungry_site(tmp_path: Path) -> Path:
    return make_package(
        tmp_path, "kernel-test-hungry", {"test_hungry": plugins.HUNGRY}, {"hungry": "test_hungry:plugin"}
    )


def hungry_kernel(site: Path, **limits: Any) -> KernelProcess:
    config = base_config()
    config["backend"]["workers"]["plugins"] = {"hungry": {"limits": limits}}
    return KernelProcess(config, paths=[site])


def test_a_worker_over_its_soft_memory_limit_is_recycled_without_a_failed_request(hungry_site: Path) -> None:
    with (
        hungry_kernel(hungry_site, memorySoftMb=200, memoryHardMb=0) as k,
        httpx.Client(base_url=k.url, timeout=20) as c,
    ):
        first = c.get("/api/hungry/pid").json()["pid"]
        stop = threading.Event()
        answers: list[int] = []

        def hammer() -> None:
            with httpx.Client(base_url=k.url, timeout=20) as h:
                while not stop.is_set():
                    answers.append(h.get("/api/hungry/pid").status_code)

        with ThreadPoolExecutor(2) as pool:
            load = [pool.submit(hammer) for _ in range(2)]
            assert c.post("/api/hungry/leak", params={"mb": 250}).json()["pid"] == first
            wait_for(lambda: c.get("/api/hungry/pid").json()["pid"] != first, 20, k.output)
            stop.set()
            for f in load:
                f.result()
        assert answers and set(answers) == {200}
        assert c.get("/api/hungry/pid").json()["held_mb"] == 0  # a fresh worker
        assert "over its soft memory limit of 200 MB" in k.output()
        wait_for(lambda: "replaced in" in k.output(), 10, k.output)  # logged once the old one is told to drain


def test_a_worker_over_its_hard_memory_limit_is_killed_and_restarted(hungry_site: Path) -> None:
    with (
        hungry_kernel(hungry_site, memorySoftMb=0, memoryHardMb=200) as k,
        httpx.Client(base_url=k.url, timeout=20) as c,
    ):
        first = c.get("/api/hungry/pid").json()["pid"]
        c.post("/api/hungry/leak", params={"mb": 250})

        def replaced() -> bool:  # a request in flight on the killed worker may fail (503): only that one
            r = c.get("/api/hungry/pid")
            return r.status_code == 200 and r.json()["pid"] != first

        wait_for(replaced, 20, k.output)
        assert "over its hard memory limit of 200 MB; killing it" in k.output()


def test_max_requests_recycles_a_worker(hungry_site: Path) -> None:
    with hungry_kernel(hungry_site, maxRequests=20) as k, httpx.Client(base_url=k.url, timeout=20) as c:
        first = c.get("/api/hungry/pid").json()["pid"]
        statuses = []

        def recycled() -> bool:
            r = c.get("/api/hungry/pid")
            statuses.append(r.status_code)
            return r.json()["pid"] != first

        wait_for(recycled, 20, k.output)
        assert set(statuses) == {200} and len(statuses) >= 19
        assert re.search(r"served \d+ requests \(maxRequests 20\)", k.output()), k.output()


def test_requests_beyond_max_in_flight_queue_and_beyond_the_queue_get_503(hungry_site: Path, tmp_path: Path) -> None:
    mark = tmp_path / "in-flight"
    with hungry_kernel(hungry_site, maxInFlight=1, queueSize=1) as k, httpx.Client(base_url=k.url, timeout=20) as c:
        with ThreadPoolExecutor(3) as pool:
            held = pool.submit(c.get, "/api/hungry/sleep", params={"s": 1.5, "mark": str(mark)})
            wait_for(mark.exists, 10, "the slow request never reached the worker")
            # two more: one waits in the queue of one, the other is shed at once
            answers = [f.result() for f in [pool.submit(c.get, "/api/hungry/pid") for _ in range(2)]]
            assert held.result().status_code == 200
        assert sorted(r.status_code for r in answers) == [200, 503]
        shed = next(r for r in answers if r.status_code == 503)
        assert shed.headers["retry-after"] == "1"
        body = shed.json()
        assert body["error"]["name"] == "ServiceUnavailableError"
        assert "at capacity (1 in flight per worker, 1 waiting)" in body["error"]["message"]
        assert c.get("/api/hungry/pid").status_code == 200


def test_check_limits_recycles_through_what_it_is_handed() -> None:
    """``check_limits`` sees only the children, each plugin's limits and how to recycle: no supervisor."""

    class Process:
        pid = os.getpid()  # a live process (its memory is not limited below)

        def exit_code(self) -> int | None:
            return None

        def terminate(self) -> None: ...
        def kill(self) -> None: ...
        def wait(self) -> int:
            return 0

    busy = Child("w.0.1", "worker", Process(), plugin_id="w", ready=True, served=20)
    starting = Child("w.1.2", "worker", Process(), plugin_id="w", served=20)
    gateway = Child("gateway-0", "gateway", Process(), ready=True, served=20)
    asked: list[str] = []
    limits = WorkerLimits(memory_soft_mb=0, memory_hard_mb=0, max_requests=20)
    for _ in range(2):  # the second tick: a recycle is on its way already
        check_limits([busy, starting, gateway], lambda plugin_id: limits, lambda child, why: asked.append(why))
    assert asked == ["worker w.0.1 served 20 requests (maxRequests 20)"]
    assert busy.recycling and not starting.recycling

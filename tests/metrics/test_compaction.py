"""The metrics files of dead processes are compacted: after many worker recycles the directory stays
small, and every figure the dead workers counted is still in the scrape, exactly once."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from kernel.metrics.files import COMPACTED
from kernel.testing import KernelProcess, make_package, wait_for
from tests import plugins
from tests.conftest import base_config
from tests.metrics.test_metrics import scrape, value

RECYCLES = 12
MAX_REQUESTS = 3


def test_many_recycles_leave_a_bounded_directory_and_the_same_totals(tmp_path: Path) -> None:
    site = make_package(tmp_path, "kernel-test-metered", {"test_metered": plugins.METERED},
                        {"metered": "test_metered:plugin"})  # fmt: skip
    config = base_config()
    config["backend"]["workers"]["plugins"] = {"metered": {"limits": {"maxRequests": MAX_REQUESTS}}}  # type: ignore[index]
    kernel = KernelProcess(config, paths=[site]).start(timeout=60)
    with httpx.Client(base_url=kernel.url, timeout=10) as client:
        pids: set[int] = set()
        hits = 0
        last_total = 0.0
        while len(pids) <= RECYCLES:
            resp = client.get("/api/metered/hit")
            if resp.status_code != 200:  # between a recycled worker and its replacement
                continue
            hits += 1
            pids.add(int(resp.json()["pid"]))
            total = value(scrape(kernel), "metered_hits_total")
            assert total >= last_total, "a counter went back"  # monotonic through every compaction
            last_total = total

        def files() -> list[str]:
            resp = client.get("/api/metered/files")
            return list(resp.json()) if resp.status_code == 200 else []

        # every dead process's files are folded in: each file left is compacted or a live process's (a
        # request to /files counts towards maxRequests too: the listing and the check are one step)
        left: list[str] = wait_for(
            lambda: (listed := files()) and not _dead_files(listed) and listed,
            timeout=15,
            message="the dead workers' files compacted",
        )
        assert 1 <= len([f for f in left if COMPACTED in f]) <= 7, left  # one per type at most
        assert len(left) <= 20, left  # a few per live process: without compaction, 3 more per recycle
        wait_for(lambda: value(scrape(kernel), "metered_hits_total") == hits, timeout=10, message="every hit counted")
        samples = scrape(kernel)
        assert value(samples, "metered_hits_total") == hits
        assert value(samples, "kernel_worker_recycles_total", plugin_id="metered") >= RECYCLES
    assert kernel.stop() == 0


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _dead_files(files: list[str]) -> list[str]:
    """Files named by the pid of a process that has ended."""
    return [f for f in files if (m := re.search(r"_(\d+)\.db$", f)) and not _alive(int(m.group(1)))]

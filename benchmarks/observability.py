"""``observability``: what the access log, request ids and metrics cost ``hello``, in one run.

Two kernels serve the bench plugin side by side: one with the production defaults
(``backend.accessLog``, ``backend.requestId`` and ``backend.metrics`` on) and one with the three
off; the load alternates between them (``kernel_benchmarks.side_by_side``). Rows ``hello-quiet`` and ``hello-observed``; the second's ratio is
its req/s over the first's (issue 11's target: at least 0.95).
"""

from __future__ import annotations

import statistics
import time
import urllib.request

from kernel_benchmarks.procs import KernelSetup, installed_plugins
from kernel_benchmarks.rows import Row, new_row
from kernel_benchmarks.scenario import Bench
from kernel_benchmarks.side_by_side import Side, side_by_side

QUIET = {"accessLog": {"enabled": False}, "requestId": {"enabled": False}, "metrics": {"enabled": False}}


def observability_rows(bench: Bench, server: str) -> list[Row]:
    return side_by_side(
        bench,
        server,
        Side("hello-quiet", {"backend": QUIET}, "access log, request ids, metrics off"),
        Side("hello-observed", {}, "access log, request ids, metrics on (defaults)"),
    )


def scrape_rows(bench: Bench, server: str) -> list[Row]:
    """``metrics-scrape``: one scrape of a kernel of 20 plugins x 2 workers, after traffic to each (target < 50 ms)."""
    have = len(installed_plugins())
    extra = max(0, 20 - have)
    setup = KernelSetup(server, extra_plugins=extra, config={"backend": {"workers": {"replicas": 2}}})
    with bench.kernel(setup) as k:
        metrics_url = k.kp.metrics_url
        for i in range(1, extra + 1):  # request figures for every plugin
            for _ in range(20):
                urllib.request.urlopen(f"{k.url}/api/bench-extra-{i}/hello", timeout=10).read()
        time.sleep(1.5)  # the gateways write their request figures once a second: let them land
        times = []
        size = 0
        for _ in range(max(20, bench.o.runs * 10)):
            t0 = time.perf_counter()
            with urllib.request.urlopen(metrics_url, timeout=10) as resp:
                size = len(resp.read())
            times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    p50, p99 = statistics.median(times), times[min(len(times) - 1, len(times) * 99 // 100)]
    return [
        new_row(
            "metrics-scrape",
            server,
            f"{have + extra} plugins x 2",
            p50_ms=round(p50, 2),
            p99_ms=round(p99, 2),
            note=f"{len(times)} scrapes of {size // 1024} KiB; target: under 50 ms",
        )
    ]

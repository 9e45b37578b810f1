"""``observability``: what the access log, request ids and metrics cost ``hello``, in one run.

Two kernels serve the bench plugin side by side: one with the production defaults
(``backend.accessLog``, ``backend.requestId`` and ``backend.metrics`` on) and one with the three
off; the load alternates between them (quiet, observed, quiet, observed...) so that drift of the
machine falls on both alike. Rows ``hello-quiet`` and ``hello-observed``; the second's ratio is
its req/s over the first's (issue 11's target: at least 0.95).
"""

from __future__ import annotations

import statistics
import time
import urllib.request

from kernel_benchmarks.loadgen import Load, LoadResult
from kernel_benchmarks.procs import BENCH_PLUGIN, KernelSetup, installed_plugins
from kernel_benchmarks.rows import Row, check, new_row
from kernel_benchmarks.scenario import Bench

QUIET = {"accessLog": {"enabled": False}, "requestId": {"enabled": False}, "metrics": {"enabled": False}}


def observability_rows(bench: Bench, server: str) -> list[Row]:
    o = bench.o
    with (
        bench.kernel(KernelSetup(server, config={"backend": QUIET})) as quiet,
        bench.kernel(KernelSetup(server)) as observed,
    ):
        kernels = {"hello-quiet": quiet, "hello-observed": observed}
        loads = {name: Load(f"{k.url}/api/{BENCH_PLUGIN}/hello") for name, k in kernels.items()}
        results: dict[str, list[LoadResult]] = {name: [] for name in kernels}
        for load in loads.values():
            check(load)
            if o.warmup > 0:
                bench.gen.run(load, duration=o.warmup, connections=o.connections)
        for _ in range(o.runs):
            for name, load in loads.items():
                results[name].append(bench.gen.run(load, duration=o.duration, connections=o.connections))
    rows = []
    for name, runs in results.items():
        rps = statistics.median(r.rps for r in runs)
        rows.append(
            new_row(
                name,
                server,
                "1gw/1wk",
                rps=round(rps),
                p50_ms=round(statistics.median(r.p50_ms for r in runs), 2),
                p99_ms=round(statistics.median(r.p99_ms for r in runs), 2),
                errors=sum(r.errors for r in runs),
                seconds=round(statistics.median(r.seconds for r in runs), 2),
                loadgen=bench.gen.name,
                note="access log, request ids, metrics " + ("off" if name == "hello-quiet" else "on (defaults)"),
            )
        )
    quiet_row, observed_row = rows
    if quiet_row["rps"]:
        observed_row["ratio"] = round(observed_row["rps"] / quiet_row["rps"], 3)
        observed_row["ratio_of"] = "hello-quiet rps"
    return rows


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

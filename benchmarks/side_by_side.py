"""Two kernels serving ``hello`` side by side, the load alternating between them: what one setting costs.

The load goes to each in turn (first, second, first, second...), ``runs`` times, so that drift of the
machine falls on both alike; each row keeps its medians. The second row's ratio is its req/s over the
first's. The ``observability`` and ``isolation`` scenarios are two such pairs.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kernel_benchmarks.loadgen import Load, LoadResult
from kernel_benchmarks.procs import BENCH_PLUGIN, Kernel, KernelSetup
from kernel_benchmarks.rows import Row, check, new_row
from kernel_benchmarks.scenario import Bench


@dataclass(frozen=True)
class Side:
    """One of the two kernels: its row's name, the config merged over the benchmark's, the row's note."""

    name: str
    config: dict[str, Any]
    note: str


def side_by_side(
    bench: Bench, server: str, first: Side, second: Side, measure: Callable[[Kernel], dict[str, Any]] | None = None
) -> list[Row]:
    """The rows of ``first`` and ``second`` (ratio: second's req/s over first's); ``measure(kernel)``, when
    given, adds fields to each row, taken after the load while the kernel still runs."""
    with (
        bench.kernel(KernelSetup(server, config=first.config)) as one,
        bench.kernel(KernelSetup(server, config=second.config)) as two,
    ):
        kernels = {first.name: one, second.name: two}
        results = alternate(bench, {name: f"{k.url}/api/{BENCH_PLUGIN}/hello" for name, k in kernels.items()})
        extra = {name: measure(k) if measure is not None else {} for name, k in kernels.items()}
    rows = [_row(side, server, results[side.name], bench.gen.name, extra[side.name]) for side in (first, second)]
    if rows[0]["rps"]:
        rows[1]["ratio"] = round(rows[1]["rps"] / rows[0]["rps"], 3)
        rows[1]["ratio_of"] = f"{first.name} rps"
    return rows


def alternate(bench: Bench, urls: dict[str, str]) -> dict[str, list[LoadResult]]:
    """Each of ``urls`` checked and warmed up, then loaded in turn, ``runs`` times: the results by name."""
    o = bench.o
    loads = {name: Load(url) for name, url in urls.items()}
    results: dict[str, list[LoadResult]] = {name: [] for name in loads}
    for load in loads.values():
        check(load)
        if o.warmup > 0:
            bench.gen.run(load, duration=o.warmup, connections=o.connections)
    for _ in range(o.runs):
        for name, load in loads.items():
            results[name].append(bench.gen.run(load, duration=o.duration, connections=o.connections))
    return results


def _row(side: Side, server: str, runs: Sequence[LoadResult], loadgen: str, extra: dict[str, Any]) -> Row:
    return new_row(
        side.name,
        server,
        "1gw/1wk",
        rps=round(statistics.median(r.rps for r in runs)),
        p50_ms=round(statistics.median(r.p50_ms for r in runs), 2),
        p99_ms=round(statistics.median(r.p99_ms for r in runs), 2),
        errors=sum(r.errors for r in runs),
        seconds=round(statistics.median(r.seconds for r in runs), 2),
        loadgen=loadgen,
        note=side.note,
        **extra,
    )

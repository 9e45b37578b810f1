"""The ``soak`` scenario: minutes of constant-rate load at a fraction of measured capacity.

1. ``kernel serve`` with the bench plugin (``--soak-variant``, 1 gateway x 1 worker by default).
2. Capacity: ``GET /api/bench/hello`` in closed loop at full speed (``--capacity-seconds``, after
   ``--warmup``), with ``loadgen.PyLoad``: the same Python client that then drives the soak, so the
   fraction is of what this client and this server reach together (``openloop`` says why not wrk).
3. The soak: ``fraction x capacity`` requests per second on a fixed schedule (``openloop.OpenLoop``)
   for ``--minutes``; every ``--sample-seconds`` the figures of the interval (requests sent, 2xx,
   errors by kind, p50/p99 from the scheduled time) and, in a thread, the RSS and CPU of every
   process of the kernel (the ``kernel serve`` pid and its children: supervisor, gateways, every
   worker, read from ``/proc`` by psutil) and of the load generator.
4. The verdict (``CRITERION``), a text report, a JSON file of every sample and an SVG plot
   (``soak_plot``), in ``--soak-dir``; one row for the main table.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

from kernel_benchmarks.loadgen import Load, LoadResult, PyLoad
from kernel_benchmarks.openloop import Interval, OpenLoop
from kernel_benchmarks.options import SoakOptions
from kernel_benchmarks.procs import BENCH_PLUGIN, MB, KernelSetup, Proc, Tree
from kernel_benchmarks.rows import Row, check, new_row
from kernel_benchmarks.scenario import Bench
from kernel_benchmarks.soak_report import CRITERION, analyse, soak_plot, soak_text

__all__ = ["ProcessSampler", "soak_rows"]

#: pause between the capacity run and the soak
SETTLE_S = 2.0


# -- the processes -----------------------------------------------------------------------------------


class ProcessSampler:
    """RSS and CPU of every process of the tree every ``interval`` seconds, in a thread."""

    def __init__(self, tree: Tree, interval: float) -> None:
        self.tree = tree
        self.interval = interval
        self.t0 = time.perf_counter()
        self.samples: list[dict[str, Any]] = []
        self.procs: dict[int, Proc] = {}
        self.names: dict[int, str] = {}
        self._ps: dict[int, psutil.Process] = {}
        self._me = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-sampler", daemon=True)

    def sample(self) -> None:
        t = time.perf_counter() - self.t0
        rss: dict[str, float] = {}
        cpu: dict[str, float] = {}
        for proc in self.tree.refresh():
            ps = self._ps.get(proc.pid)
            try:
                if ps is None or ps.create_time() != proc.created:
                    ps = self._ps[proc.pid] = psutil.Process(proc.pid)
                    ps.cpu_percent(None)  # the first call only starts the count
                    self.names[proc.pid] = " ".join(ps.cmdline()[1:3])
                with ps.oneshot():
                    rss[str(proc.pid)] = round(ps.memory_info().rss / MB, 2)
                    cpu[str(proc.pid)] = round(ps.cpu_percent(None), 1)
            except psutil.Error:
                continue
            self.procs[proc.pid] = proc
        me = round(self._me.cpu_percent(None), 1)
        self.samples.append({"t": round(t, 3), "rss_mb": rss, "cpu_pct": cpu, "loadgen_cpu_pct": me})

    def _run(self) -> None:
        n = 1
        while not self._stop.wait(max(0.0, self.t0 + n * self.interval - time.perf_counter())):
            self.sample()
            n += 1

    def __enter__(self) -> ProcessSampler:
        self.t0 = time.perf_counter()
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


# -- the scenario ------------------------------------------------------------------------------------


def soak_rows(bench: Bench, server: str) -> list[Row]:
    so: SoakOptions = bench.o.soak
    variant = f"{so.gateways}gw/{so.replicas}wk"
    with bench.kernel(KernelSetup(server, gateways=so.gateways, replicas=so.replicas)) as k:
        assert k.tree is not None
        route = f"/api/{BENCH_PLUGIN}/hello"
        load = Load(k.url + route)
        check(load)
        capacity: dict[str, Any] | None = None
        if so.rate is None:
            gen = PyLoad()
            if bench.o.warmup:
                gen.run(load, duration=bench.o.warmup, connections=bench.o.connections)
            res: LoadResult = gen.run(load, duration=so.capacity_seconds, connections=bench.o.connections)
            if not res.rps or res.errors * 2 >= res.requests:
                raise RuntimeError(f"capacity run: {res.requests} requests, {res.errors} errors; not soaking on that")
            capacity = {
                "rps": round(res.rps, 1),
                "p99_ms": round(res.p99_ms, 3),
                "errors": res.errors,
                "seconds": round(res.seconds, 2),
                "connections": bench.o.connections,
                "loadgen": gen.name,
            }
            rate = so.fraction * res.rps
            time.sleep(SETTLE_S)  # the closed loop's connections close; the soak starts on a quiet server
            bench.log(f"  capacity {res.rps:,.0f} req/s ({res.errors} errors); soaking at {rate:,.0f} req/s")
        else:
            rate = so.rate
        seconds = so.minutes * 60
        sampler = ProcessSampler(k.tree, so.sample_seconds)

        def progress(iv: Interval) -> None:
            last = sampler.samples[-1]["rss_mb"] if sampler.samples else {}
            bench.log(
                f"  [{time.strftime('%H:%M:%S')}] {iv.end:5.0f}/{seconds:.0f} s: "
                f"{(iv.ok + iv.errors) / max(iv.end - iv.start, 1e-9):7,.0f} req/s, "
                f"p99 {iv.latency.percentile(99) * 1000:6.2f} ms, errors {iv.errors}, "
                f"RSS {sum(last.values()):.0f} MB in {len(last)} processes"
            )

        driver = OpenLoop(
            load,
            rate=rate,
            duration=seconds,
            interval=so.sample_seconds,
            max_connections=bench.o.connections,
            on_interval=progress,
        )
        with sampler:
            intervals = driver.run()
        offset = driver.start - sampler.t0  # the load began this long after the first sample
        for iv in intervals:
            iv.start += offset
            iv.end += offset
    result = analyse(sampler.samples, intervals, sampler.procs, sampler.names)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    so.out_dir.mkdir(parents=True, exist_ok=True)
    base = so.out_dir / f"soak-{server}-{stamp}"
    paths = {
        "json": str(base.with_suffix(".json")),
        "plot": str(base.with_suffix(".svg")),
        "text": str(base.with_suffix(".txt")),
    }
    doc: dict[str, Any] = {
        "scenario": "soak",
        "server": server,
        "variant": variant,
        "route": route,
        "minutes": so.minutes,
        "fraction": so.fraction if so.rate is None else None,
        "rate": round(rate, 1),
        "sample_seconds": so.sample_seconds,
        "capacity": capacity,
        "criterion": CRITERION,
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(so).items()},
        "files": paths,
        "result": result,
        "intervals": [iv.summary() for iv in intervals],
        "samples": sampler.samples,
    }
    text = soak_text(doc) + f"\n  files: {paths['text']}, {paths['json']}, {paths['plot']} (SVG)"
    Path(paths["json"]).write_text(json.dumps(doc, indent=1) + "\n")
    Path(paths["plot"]).write_text(soak_plot(doc))
    Path(paths["text"]).write_text(text + "\n")
    bench.texts.append(text)
    procs = result["processes"]

    def peak(role: str, plugin: str | None = None) -> float | None:
        vals = [p["peak_mb"] for p in procs if p["role"] == role and (plugin is None or p["plugin"] == plugin)]
        return round(max(vals), 1) if vals else None

    def growth(role: str | None, plugin: str | None = None) -> float | None:
        vals = [
            p["growth_mb"]
            for p in procs
            if p["growth_mb"] is not None
            and (role is None or p["role"] == role)
            and (plugin is None or p["plugin"] == plugin)
        ]
        return round(max(vals), 1) if vals else None

    row = new_row(
        "soak",
        server,
        variant,
        rps=round(result["rps"]),
        p50_ms=round(result["p50_ms"], 2),
        p99_ms=round(result["p99_ms"], 2),
        p999_ms=round(result["p999_ms"], 2),
        errors=result["errors"],
        rss_mb=round(sum(p["peak_mb"] for p in procs), 1),
        gateway_rss_mb=peak("gateway"),
        worker_rss_mb=peak("worker", BENCH_PLUGIN),
        rss_growth_mb=growth(None),
        gateway_rss_growth_mb=growth("gateway"),
        worker_rss_growth_mb=growth("worker", BENCH_PLUGIN),
        seconds=result["seconds"],
        loadgen="open loop, constant rate (ours)",
        note=(
            f"{so.minutes:g} min at "
            + (f"{so.fraction:g} x {capacity['rps']:,.0f} req/s" if capacity else f"{rate:,.0f} req/s (--rate)")
            + f"; {'PASS' if result['passed'] else 'FAIL'}"
        ),
    )
    row["soak"] = {"passed": result["passed"], "reasons": result["reasons"], "rate": round(rate, 1), **paths}
    return [row]

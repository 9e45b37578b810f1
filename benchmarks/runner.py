"""The runner: it runs the scenarios ``benchmarks.scenarios`` lists, each through a ``Bench`` (itself),
which starts the systems under test, measures, stops them and checks nothing is left."""

from __future__ import annotations

import shutil
import statistics
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from kernel_benchmarks import LOAD_SCENARIOS, ON_REQUEST, PEERS_COMPARE, SCENARIOS
from kernel_benchmarks.download import DownloadResult, download
from kernel_benchmarks.loadgen import Load, LoadGenerator, LoadResult
from kernel_benchmarks.options import Options
from kernel_benchmarks.peer import BackstagePeer
from kernel_benchmarks.procs import BENCH_PLUGIN, BaselineServer, Kernel, KernelSetup, RssSampler
from kernel_benchmarks.rows import Row, check, merge_rounds, new_row
from kernel_benchmarks.scenarios import REGISTRY
from kernel_benchmarks.upload import UploadResult, upload


class Runner:
    """Runs the wanted scenarios on each server; a ``Bench`` to each of them (``benchmarks.scenario``)."""

    def __init__(self, opts: Options, gen: LoadGenerator, work: Path, log: Callable[[str], None] = print) -> None:
        self.o = opts
        self.gen = gen
        self.work = work
        self.log = log
        self.rows: list[Row] = []
        self.failures: list[str] = []
        self.systems = 0  # systems under test started and proven gone
        self.texts: list[str] = []  # reports of their own (the soak's), printed after the table
        self._round = ""  # " (round 2/3)" in the log while rounds run

    @property
    def big(self) -> str:
        """Row name of the big download: ``download-1gb`` by default."""
        size = self.o.download_bytes
        return "download-1gb" if size == 1024**3 else f"download-{size // 1024**2}mb"

    # -- scenarios ---------------------------------------------------------------------------------------
    def run(self) -> list[Row]:
        """Every wanted scenario on each server, in rounds: with ``--runs N``, N rounds, each of which runs
        every scenario once (one measurement, fresh systems) in the same order, so that rows compared
        with each other (a kernel row and its baseline, or Backstage's) share every round. A row is
        merged over the rounds (``rows.merge_rounds``). The on-request scenarios (the soak) run once, after."""
        wanted = set(self.o.scenarios)
        if "peers" in wanted:
            wanted |= set(PEERS_COMPARE)  # the kernel rows Backstage's are compared with
        if wanted & set(LOAD_SCENARIOS):
            wanted.add("baseline")  # their ratios are to the baseline rows
        self.o = replace(self.o, scenarios=[name for name in SCENARIOS if name in wanted])
        plan = [(server, name) for server in self.o.servers for name in SCENARIOS if name in wanted]
        rotated = [p for p in plan if p[1] not in ON_REQUEST]
        runs, rounds = self.o.runs, []
        if rotated:
            self.o = replace(self.o, runs=1)
            try:
                for n in range(1, runs + 1):
                    self.rows = []
                    self._round = f" (round {n}/{runs})" if runs > 1 else ""
                    self._plan(rotated)
                    rounds.append(self.rows)
            finally:
                self.o = replace(self.o, runs=runs)
                self._round = ""
        self.rows = merge_rounds(rounds) if rounds else []
        self._plan([p for p in plan if p[1] in ON_REQUEST])
        return self.rows

    def _plan(self, plan: list[tuple[str, str]]) -> None:
        for server, name in plan:
            scenario = REGISTRY[name]
            for variant in scenario.variants(self.o):
                self._guard(name, server, scenario.rows, *variant)

    def note(self, line: str) -> None:
        """A line for the report, after the table (once, however many rounds say it)."""
        if line not in self.texts:
            self.texts.append(line)

    def _guard(self, name: str, server: str, fn: Callable[..., list[Row] | Row], *args: Any) -> None:
        label = f"{name} {'x'.join(map(str, args))}".strip()
        self.log(f"[{time.strftime('%H:%M:%S')}] {label} on {server}{self._round} ...")
        try:
            out = fn(self, server, *args)
        except Exception as exc:  # one failed scenario does not stop the others
            self.failures.append(
                f"{label} on {server}{self._round}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            )
            self.log(f"FAILED {label} on {server}: {exc}\n{traceback.format_exc(limit=3)}")
            return
        self.rows.extend(out if isinstance(out, list) else [out])

    # -- measuring ---------------------------------------------------------------------------------
    def _load(self, load: Load, sampler_target: Any) -> tuple[LoadResult, RssSampler, int]:
        """Warm up, then ``runs`` measurements; per-figure medians, errors summed, RSS peaks kept."""
        check(load)
        if self.o.warmup > 0:
            self.gen.run(load, duration=self.o.warmup, connections=self.o.connections)
        results = []
        with RssSampler(sampler_target, interval=0.25) as sampler:
            for _ in range(self.o.runs):
                results.append(self.gen.run(load, duration=self.o.duration, connections=self.o.connections))
        med = LoadResult(
            requests=int(statistics.median(r.requests for r in results)),
            seconds=statistics.median(r.seconds for r in results),
            bytes=int(statistics.median(r.bytes for r in results)),
            errors=sum(r.errors for r in results),
            p50_ms=statistics.median(r.p50_ms for r in results),
            p90_ms=statistics.median(r.p90_ms for r in results),
            p99_ms=statistics.median(r.p99_ms for r in results),
            p999_ms=statistics.median(r.p999_ms for r in results),
            max_ms=max(r.max_ms for r in results),
        )
        rps = statistics.median(r.rps for r in results)
        return med, sampler, round(rps)

    def load_row(
        self,
        scenario: str,
        server: str,
        load: Load,
        target: Any,
        *,
        kernel: bool,
        variant: str = "",
        plugin: str = BENCH_PLUGIN,
    ) -> Row:
        res, sampler, rps = self._load(load, target)
        row = new_row(
            scenario,
            server,
            variant,
            rps=rps,
            p50_ms=round(res.p50_ms, 2),
            p99_ms=round(res.p99_ms, 2),
            p999_ms=round(res.p999_ms, 2),
            errors=res.errors,
            rss_mb=sampler.total(),
            mb_s=round(res.mb_s, 1),
            seconds=round(res.seconds, 2),
            loadgen=self.gen.name,
        )
        if kernel:
            row["gateway_rss_mb"] = sampler.peak_of("gateway")
            row["worker_rss_mb"] = sampler.peak_of("worker", plugin)
        if res.errors and res.errors * 2 >= res.requests:
            row["note"] = "MOSTLY ERRORS: figures are of error answers"
        return row

    def download_row(
        self, scenario: str, server: str, url: str, target: Any, *, kernel: bool, plugin: str = BENCH_PLUGIN
    ) -> Row:
        """The big streamed download: MB/s of a read-and-discard client, RSS (``plugin``'s worker) every 50 ms."""
        get = partial(download, url, deadline_s=self.o.download_timeout)
        return self._transfer_row(scenario, server, get, "download client", target, kernel=kernel, plugin=plugin)

    def upload_row(
        self, scenario: str, server: str, url: str, target: Any, *, kernel: bool, plugin: str = BENCH_PLUGIN
    ) -> Row:
        """The big upload: MB/s of a client sending from one buffer, its size checked, RSS every 50 ms."""
        size = self.o.download_bytes
        post = partial(upload, url, size, deadline_s=self.o.download_timeout)
        row = self._transfer_row(scenario, server, post, "upload client", target, kernel=kernel, plugin=plugin)
        if not row["errors"]:  # each answer's count was checked (``upload``): say so
            row["note"] += f"; the handler read all {size} bytes"
        return row

    def _transfer_row(
        self,
        scenario: str,
        server: str,
        transfer: Callable[[], DownloadResult | UploadResult],
        client: str,
        target: Any,
        *,
        kernel: bool,
        plugin: str,
    ) -> Row:
        """``runs`` transfers of the big body: median MB/s, the RSS of every process of ``target`` every 50 ms."""
        results = []
        with RssSampler(target, interval=0.05) as sampler:
            for _ in range(self.o.runs):
                results.append(transfer())
        mb_s = statistics.median(r.mb_s for r in results)
        bad = [r for r in results if not r.complete or r.status != 200]
        row = new_row(
            scenario,
            server,
            mb_s=round(mb_s, 1),
            errors=len(bad),
            rss_mb=sampler.total(),
            seconds=round(statistics.median(r.seconds for r in results), 2),
            loadgen=client,
            note=(bad[0].error or f"status {bad[0].status}") if bad else f"{self.o.download_bytes // 1024**2} MiB",
        )
        if kernel:
            row["gateway_rss_mb"] = sampler.peak_of("gateway")
            row["worker_rss_mb"] = sampler.peak_of("worker", plugin)
            row["gateway_rss_growth_mb"] = sampler.growth_of("gateway")
            row["worker_rss_growth_mb"] = sampler.growth_of("worker", plugin)
            kern = sampler.growth_of("kernel")
            row["rss_growth_mb"] = max(
                v for v in (row["gateway_rss_growth_mb"], row["worker_rss_growth_mb"], kern, 0.0) if v is not None
            )
        else:
            row["rss_growth_mb"] = sampler.growth_of("server")
        return row

    # -- systems under test ------------------------------------------------------------------------
    @contextmanager
    def baseline(self, server: str, app: str = "plain") -> Iterator[BaselineServer]:
        b = BaselineServer(server, self.work, app)
        try:
            b.start()
            yield b
        finally:
            b.stop()
            self.systems += 1

    @contextmanager
    def backstage(self, upstream: str | None = None) -> Iterator[BackstagePeer]:
        peer = BackstagePeer(self.work, upstream)
        try:
            peer.start()
            yield peer
        finally:
            peer.stop()
            self.systems += 1

    @contextmanager
    def spawned(self, setup: KernelSetup) -> Iterator[Kernel]:
        k = Kernel(setup, self.work)
        try:
            yield k
        finally:
            k.stop()
            shutil.rmtree(k.kp.config_path.parent, ignore_errors=True)
            self.systems += 1

    @contextmanager
    def kernel(self, setup: KernelSetup) -> Iterator[Kernel]:
        with self.spawned(setup) as k:
            k.start()
            yield k

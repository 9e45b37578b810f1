"""The scenarios: each starts its system under test, measures, stops it and checks nothing is left."""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks import LOAD_SCENARIOS, SCENARIOS
from benchmarks.download import download
from benchmarks.loadgen import Load, LoadGenerator, LoadResult
from benchmarks.observability import observability_rows, scrape_rows
from benchmarks.procs import (
    BENCH_PLUGIN,
    PEER_PLUGIN,
    TOKEN,
    BaselineServer,
    Kernel,
    KernelSetup,
    RssSampler,
    installed_plugins,
)
from benchmarks.proxy import proxy_download_rows, proxy_rows
from benchmarks.soak import SoakOptions, soak_rows
from benchmarks.websocket import ws_rows

SMALL_DOWNLOAD = 1024 * 1024
#: scenarios in modules of their own: ``rows(runner, server)``
EXTRA_SCENARIOS: dict[str, Callable[..., list[dict[str, Any]]]] = {
    "websocket": ws_rows,
    "observability": observability_rows,
    "metrics-scrape": scrape_rows,
    "proxy": proxy_rows,
    "proxy-1gb": proxy_download_rows,
    "soak": soak_rows,
}

ROW_KEYS = (
    "scenario",
    "variant",
    "server",
    "rps",
    "p50_ms",
    "p99_ms",
    "p999_ms",
    "errors",
    "rss_mb",
    "gateway_rss_mb",
    "worker_rss_mb",
    "mb_s",
    "rss_growth_mb",
    "gateway_rss_growth_mb",
    "worker_rss_growth_mb",
    "seconds",
    "ratio",
    "ratio_of",
    "p99_ratio",
    "loadgen",
    "note",
)


def echo_body(size: int = 1024) -> bytes:
    """A JSON object of exactly ``size`` bytes (compact separators)."""
    doc: dict[str, Any] = {"id": 42, "kind": "bench", "tags": ["a", "b", "c"], "payload": ""}
    base = len(json.dumps(doc, separators=(",", ":")))
    doc["payload"] = "x" * max(0, size - base)
    return json.dumps(doc, separators=(",", ":")).encode()


def new_row(scenario: str, server: str, variant: str = "", **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(ROW_KEYS)
    row.update(scenario=scenario, variant=variant, server=server, errors=0)
    row.update(values)
    return row


@dataclass
class Options:
    servers: list[str]
    scenarios: list[str]
    duration: int = 5
    warmup: int = 1
    connections: int = 32
    runs: int = 1
    hello_variants: list[tuple[int, int]] = field(default_factory=lambda: [(1, 1), (1, 2), (2, 1), (2, 2)])
    download_bytes: int = 1024**3
    download_timeout: float = 60.0
    startup_plugins: int = 5
    trials: int = 3
    soak: SoakOptions = field(default_factory=SoakOptions)


class Runner:
    def __init__(self, opts: Options, gen: LoadGenerator, work: Path, log: Callable[[str], None] = print) -> None:
        self.o = opts
        self.gen = gen
        self.work = work
        self.log = log
        self.rows: list[dict[str, Any]] = []
        self.failures: list[str] = []
        self.systems = 0  # systems under test started and proven gone
        self.texts: list[str] = []  # reports of their own (the soak's), printed after the table

    @property
    def big(self) -> str:
        """Row name of the big download: ``download-1gb`` by default."""
        size = self.o.download_bytes
        return "download-1gb" if size == 1024**3 else f"download-{size // 1024**2}mb"

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

    def _load_row(
        self,
        scenario: str,
        server: str,
        load: Load,
        target: Any,
        *,
        kernel: bool,
        variant: str = "",
        plugin: str = BENCH_PLUGIN,
    ) -> dict[str, Any]:
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

    def _download_row(
        self, scenario: str, server: str, url: str, target: Any, *, kernel: bool, plugin: str = BENCH_PLUGIN
    ) -> dict[str, Any]:
        """The big streamed download: MB/s of a read-and-discard client, RSS (``plugin``'s worker) every 50 ms."""
        results = []
        with RssSampler(target, interval=0.05) as sampler:
            for _ in range(self.o.runs):
                results.append(download(url, deadline_s=self.o.download_timeout))
        mb_s = statistics.median(r.mb_s for r in results)
        bad = [r for r in results if not r.complete or r.status != 200]
        row = new_row(
            scenario,
            server,
            mb_s=round(mb_s, 1),
            errors=len(bad),
            rss_mb=sampler.total(),
            seconds=round(statistics.median(r.seconds for r in results), 2),
            loadgen="download client",
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
    def baseline(self, server: str) -> Iterator[BaselineServer]:
        b = BaselineServer(server, self.work)
        try:
            b.start()
            yield b
        finally:
            b.stop()
            self.systems += 1

    @contextmanager
    def kernel(self, setup: KernelSetup) -> Iterator[Kernel]:
        k = Kernel(setup, self.work)
        try:
            k.start()
            yield k
        finally:
            k.stop()
            shutil.rmtree(k.kp.config_path.parent, ignore_errors=True)
            self.systems += 1

    # -- scenarios ---------------------------------------------------------------------------------------
    def run(self) -> list[dict[str, Any]]:
        wanted = set(self.o.scenarios)
        for server in self.o.servers:
            if wanted & {"baseline", *LOAD_SCENARIOS}:
                self._guard("baseline", server, self.baseline_rows)
            if "hello" in wanted:
                for gateways, replicas in self.o.hello_variants:
                    self._guard("hello", server, self.hello_row, gateways, replicas)
            for name in SCENARIOS[2:]:  # after baseline and hello, in the order of SCENARIOS
                if name in wanted:
                    extra = EXTRA_SCENARIOS.get(name)
                    self._guard(name, server, partial(extra, self) if extra else getattr(self, f"{name}_rows"))
        return self.rows

    def _guard(
        self, name: str, server: str, fn: Callable[..., list[dict[str, Any]] | dict[str, Any]], *args: Any
    ) -> None:
        label = f"{name} {'x'.join(map(str, args))}".strip()
        self.log(f"[{time.strftime('%H:%M:%S')}] {label} on {server} ...")
        try:
            out = fn(server, *args)
        except Exception as exc:  # one failed scenario does not stop the others
            self.failures.append(f"{label} on {server}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
            self.log(f"FAILED {label} on {server}: {exc}\n{traceback.format_exc(limit=3)}")
            return
        self.rows.extend(out if isinstance(out, list) else [out])

    def baseline_rows(self, server: str) -> list[dict[str, Any]]:
        wanted = set(self.o.scenarios)
        rows = []
        with self.baseline(server) as b:
            assert b.tree is not None
            rows.append(self._load_row("baseline", server, Load(b.url + "/hello"), b.tree, kernel=False))
            if "echo" in wanted:
                load = Load(b.url + "/echo", "POST", echo_body(), (("Content-Type", "application/json"),))
                rows.append(self._load_row("baseline-echo", server, load, b.tree, kernel=False))
            if "download" in wanted:
                url = f"{b.url}/download?size={self.o.download_bytes}"
                rows.append(self._download_row(f"baseline-{self.big}", server, url, b.tree, kernel=False))
                load = Load(f"{b.url}/download?size={SMALL_DOWNLOAD}")
                rows.append(self._load_row("baseline-download-1mb", server, load, b.tree, kernel=False))
        for r in rows:
            r["note"] = r["note"] or "in-process Starlette, 1 process"
        return rows

    def hello_row(self, server: str, gateways: int, replicas: int) -> dict[str, Any]:
        with self.kernel(KernelSetup(server, gateways=gateways, replicas=replicas)) as k:
            assert k.tree is not None
            return self._load_row(
                "hello",
                server,
                Load(f"{k.url}/api/{BENCH_PLUGIN}/hello"),
                k.tree,
                kernel=True,
                variant=f"{gateways}gw/{replicas}wk",
            )

    def auth_rows(self, server: str) -> dict[str, Any]:
        with self.kernel(KernelSetup(server)) as k:
            assert k.tree is not None
            url = f"{k.url}/api/{BENCH_PLUGIN}/private/hello"
            status = http_status(url)
            if status != 401:
                raise RuntimeError(f"{url} without a token answered {status}, expected 401: not a protected route")
            load = Load(url, headers=(("Authorization", f"Bearer {TOKEN}"),))
            row = self._load_row("auth", server, load, k.tree, kernel=True, variant="1gw/1wk")
            row["note"] = row["note"] or "static token"
            return row

    def p2p_rows(self, server: str) -> list[dict[str, Any]]:
        """The protected hello with a plugin token instead of a static one; then a plugin calling another."""
        with self.kernel(KernelSetup(server)) as k:
            assert k.tree is not None
            token = http_text(f"{k.url}/api/{PEER_PLUGIN}/token")
            load = Load(f"{k.url}/api/{BENCH_PLUGIN}/private/hello", headers=(("Authorization", f"Bearer {token}"),))
            with_token = self._load_row("auth-plugin-token", server, load, k.tree, kernel=True, variant="1gw/1wk")
            with_token["note"] = with_token["note"] or "plugin token (ES256, cached after first check)"
            call = self._load_row("p2p", server, Load(f"{k.url}/api/{PEER_PLUGIN}/p2p"), k.tree, kernel=True)
            call["variant"] = "1gw/1wk each"
            call["note"] = call["note"] or "bench-peer -> gateway -> bench per request"
            return [with_token, call]

    def echo_rows(self, server: str) -> dict[str, Any]:
        with self.kernel(KernelSetup(server)) as k:
            assert k.tree is not None
            load = Load(
                f"{k.url}/api/{BENCH_PLUGIN}/echo", "POST", echo_body(), (("Content-Type", "application/json"),)
            )
            row = self._load_row("echo", server, load, k.tree, kernel=True, variant="1gw/1wk")
            row["note"] = row["note"] or "POST 1 KiB JSON"
            return row

    def download_rows(self, server: str) -> list[dict[str, Any]]:
        with self.kernel(KernelSetup(server)) as k:
            assert k.tree is not None
            base = f"{k.url}/api/{BENCH_PLUGIN}/download"
            # the big one first, on fresh processes: its RSS growth is not hidden by the 1 MiB load's peak
            big = self._download_row(self.big, server, f"{base}?size={self.o.download_bytes}", k.tree, kernel=True)
            small = self._load_row("download-1mb", server, Load(f"{base}?size={SMALL_DOWNLOAD}"), k.tree, kernel=True)
            for r in (big, small):
                r["variant"] = "1gw/1wk"
            return [big, small]

    def startup_rows(self, server: str) -> dict[str, Any]:
        """Spawn ``kernel serve`` with N plugins (the bench one, the installed ones, generated ones)."""
        have = len(set(installed_plugins()) | {BENCH_PLUGIN})
        extra = max(0, self.o.startup_plugins - have)
        times, totals, gws, wks = [], [], [], []
        for _ in range(max(self.o.trials, self.o.runs)):
            k = Kernel(KernelSetup(server, extra_plugins=extra), self.work)
            try:
                t0 = k.spawn()
                k.wait_ready()
                times.append(time.monotonic() - t0)
                with RssSampler(k.tree) as s:  # type: ignore[arg-type]
                    pass
                totals.append(s.total())
                gws.append(s.peak_of("gateway") or 0.0)
                wks.append(s.peak_of("worker") or 0.0)
            finally:
                k.stop()
                shutil.rmtree(k.kp.config_path.parent, ignore_errors=True)
                self.systems += 1
        return new_row(
            "startup",
            server,
            f"{have + extra} plugins",
            seconds=round(statistics.median(times), 3),
            rss_mb=round(statistics.median(totals), 1),
            gateway_rss_mb=max(gws),
            worker_rss_mb=max(wks),
            note=f"median of {len(times)}, max {max(times):.3f}s; idle RSS at readiness",
        )

    def recovery_rows(self, server: str) -> dict[str, Any]:
        """``kill -9`` the bench worker; time until the route answers 200 again. Several kills, median."""
        times: list[float] = []
        failed_polls = 0
        for _ in range(self.o.runs):
            with self.kernel(KernelSetup(server)) as k:
                url = f"{k.url}/api/{BENCH_PLUGIN}/hello"
                for _ in range(self.o.trials):
                    workers = k.workers()
                    if len(workers) != 1:
                        raise RuntimeError(f"expected one bench worker, found {len(workers)}")
                    victim = workers[0].pid
                    t0 = time.monotonic()
                    os.kill(victim, signal.SIGKILL)
                    deadline = t0 + 30
                    while True:
                        if http_status(url, timeout=2.0) == 200:
                            break
                        failed_polls += 1
                        if time.monotonic() > deadline:
                            raise RuntimeError("the killed worker did not come back within 30 s")
                        time.sleep(0.005)
                    times.append(time.monotonic() - t0)
                    if any(w.pid == victim for w in k.workers()):
                        raise RuntimeError("the killed worker is still there")
                    k.wait_ready()
                    time.sleep(0.3)
        return new_row(
            "recovery",
            server,
            "1gw/1wk",
            seconds=round(statistics.median(times), 3),
            note=f"median of {len(times)} kills, max {max(times):.3f}s; {failed_polls} non-200 polls meanwhile",
        )


def http_status(
    url: str, timeout: float = 5.0, data: bytes | None = None, headers: dict[str, str] | None = None
) -> int:
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            r.read()
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return 0


def http_text(url: str, timeout: float = 10.0) -> str:
    """The body of a GET that must succeed."""
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return str(r.read().decode())


def check(load: Load) -> None:
    """One request before the load: the route must answer 200, or the figures would be of errors."""
    status = http_status(load.url, data=load.body or None, headers=dict(load.headers))
    if status != 200:
        raise RuntimeError(f"{load.method} {load.url} answered {status} before the load; not measuring errors")

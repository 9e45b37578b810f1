"""The basic scenarios: ``baseline``, ``hello``, ``hello-composed``, ``auth``, ``p2p``, ``echo``, ``download``, ``startup``,
``recovery`` (benchmarks/README.md says what each measures). Each is ``rows(bench, server, ...)``."""

from __future__ import annotations

import os
import signal
import statistics
import time

from kernel_benchmarks.loadgen import Load
from kernel_benchmarks.procs import BENCH_PLUGIN, PEER_PLUGIN, TOKEN, KernelSetup, RssSampler, installed_plugins
from kernel_benchmarks.rows import Row, echo_body, http_status, http_text, new_row
from kernel_benchmarks.scenario import Bench

SMALL_DOWNLOAD = 1024 * 1024


def baseline_rows(bench: Bench, server: str) -> list[Row]:
    wanted = set(bench.o.scenarios)
    rows = []
    with bench.baseline(server) as b:
        assert b.tree is not None
        rows.append(bench.load_row("baseline", server, Load(b.url + "/hello"), b.tree, kernel=False))
        if "echo" in wanted:
            load = Load(b.url + "/echo", "POST", echo_body(), (("Content-Type", "application/json"),))
            rows.append(bench.load_row("baseline-echo", server, load, b.tree, kernel=False))
        if "download" in wanted:
            url = f"{b.url}/download?size={bench.o.download_bytes}"
            rows.append(bench.download_row(f"baseline-{bench.big}", server, url, b.tree, kernel=False))
            load = Load(f"{b.url}/download?size={SMALL_DOWNLOAD}")
            rows.append(bench.load_row("baseline-download-1mb", server, load, b.tree, kernel=False))
    for r in rows:
        r["note"] = r["note"] or "in-process Starlette, 1 process"
    return rows


def hello_row(bench: Bench, server: str, gateways: int, replicas: int) -> Row:
    with bench.kernel(KernelSetup(server, gateways=gateways, replicas=replicas)) as k:
        assert k.tree is not None
        return bench.load_row(
            "hello",
            server,
            Load(f"{k.url}/api/{BENCH_PLUGIN}/hello"),
            k.tree,
            kernel=True,
            variant=f"{gateways}gw/{replicas}wk",
        )


def composed_row(bench: Bench, server: str) -> Row:
    """hello through the kernel's whole gateway in one process, no worker process: the stack without the hop."""
    with bench.baseline(server, app="composed") as b:
        assert b.tree is not None
        row = bench.load_row("hello-composed", server, Load(b.url + b.hello), b.tree, kernel=False)
    row["note"] = row["note"] or "gateway composed in 1 process, bench plugin in memory"
    return row


def auth_rows(bench: Bench, server: str) -> Row:
    with bench.kernel(KernelSetup(server)) as k:
        assert k.tree is not None
        url = f"{k.url}/api/{BENCH_PLUGIN}/private/hello"
        status = http_status(url)
        if status != 401:
            raise RuntimeError(f"{url} without a token answered {status}, expected 401: not a protected route")
        load = Load(url, headers=(("Authorization", f"Bearer {TOKEN}"),))
        row = bench.load_row("auth", server, load, k.tree, kernel=True, variant="1gw/1wk")
        row["note"] = row["note"] or "static token"
        return row


def p2p_rows(bench: Bench, server: str) -> list[Row]:
    """The protected hello with a plugin token instead of a static one; then a plugin calling another."""
    with bench.kernel(KernelSetup(server)) as k:
        assert k.tree is not None
        token = http_text(f"{k.url}/api/{PEER_PLUGIN}/token")
        load = Load(f"{k.url}/api/{BENCH_PLUGIN}/private/hello", headers=(("Authorization", f"Bearer {token}"),))
        with_token = bench.load_row("auth-plugin-token", server, load, k.tree, kernel=True, variant="1gw/1wk")
        with_token["note"] = with_token["note"] or "plugin token (ES256, cached after first check)"
        call = bench.load_row("p2p", server, Load(f"{k.url}/api/{PEER_PLUGIN}/p2p"), k.tree, kernel=True)
        call["variant"] = "1gw/1wk each"
        call["note"] = call["note"] or "bench-peer -> gateway -> bench per request"
        return [with_token, call]


def echo_rows(bench: Bench, server: str) -> Row:
    with bench.kernel(KernelSetup(server)) as k:
        assert k.tree is not None
        load = Load(f"{k.url}/api/{BENCH_PLUGIN}/echo", "POST", echo_body(), (("Content-Type", "application/json"),))
        row = bench.load_row("echo", server, load, k.tree, kernel=True, variant="1gw/1wk")
        row["note"] = row["note"] or "POST 1 KiB JSON"
        return row


def download_rows(bench: Bench, server: str) -> list[Row]:
    with bench.kernel(KernelSetup(server)) as k:
        assert k.tree is not None
        base = f"{k.url}/api/{BENCH_PLUGIN}/download"
        # the big one first, on fresh processes: its RSS growth is not hidden by the 1 MiB load's peak
        big = bench.download_row(bench.big, server, f"{base}?size={bench.o.download_bytes}", k.tree, kernel=True)
        small = bench.load_row("download-1mb", server, Load(f"{base}?size={SMALL_DOWNLOAD}"), k.tree, kernel=True)
        for r in (big, small):
            r["variant"] = "1gw/1wk"
        return [big, small]


def startup_rows(bench: Bench, server: str) -> Row:
    """Spawn ``kernel serve`` with N plugins (the bench one, the installed ones, generated ones)."""
    o = bench.o
    have = len(set(installed_plugins()) | {BENCH_PLUGIN})
    extra = max(0, o.startup_plugins - have)
    times, totals, gws, wks = [], [], [], []
    for _ in range(max(o.trials, o.runs)):
        with bench.spawned(KernelSetup(server, extra_plugins=extra)) as k:
            t0 = k.spawn()
            k.wait_ready()
            times.append(time.monotonic() - t0)
            with RssSampler(k.tree) as s:  # type: ignore[arg-type]
                pass
            totals.append(s.total())
            gws.append(s.peak_of("gateway") or 0.0)
            wks.append(s.peak_of("worker") or 0.0)
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


def recovery_rows(bench: Bench, server: str) -> Row:
    """``kill -9`` the bench worker; time until the route answers 200 again. Several kills, median."""
    times: list[float] = []
    failed_polls = 0
    for _ in range(bench.o.runs):
        with bench.kernel(KernelSetup(server)) as k:
            url = f"{k.url}/api/{BENCH_PLUGIN}/hello"
            for _ in range(bench.o.trials):
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

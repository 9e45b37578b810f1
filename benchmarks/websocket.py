"""The ``websocket`` scenario: small messages echoed over WebSockets, in-process and through a worker.

Each of ``connections`` clients (aiohttp, on one event loop in a child
process of its own, so the runner's threads do not share its loop) sends one
small text message, waits for its echo, and sends the next, for ``duration``
seconds. Reported: echoed messages per second and round-trip percentiles; the
ratio is to the in-process Starlette WebSocket of the same server in the same
run (``baseline-ws-echo``).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from typing import Any

from kernel_benchmarks.loadgen import LoadResult
from kernel_benchmarks.rows import Row, new_row
from kernel_benchmarks.scenario import Bench

MESSAGE = "x" * 64


async def _client(url: str, until: float, latencies: list[float], errors: list[int]) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.ws_connect(url, max_msg_size=0) as ws:
        while time.monotonic() < until:
            t0 = time.perf_counter()
            await ws.send_str(MESSAGE)
            msg = await ws.receive()
            if msg.type != aiohttp.WSMsgType.TEXT or msg.data != MESSAGE:
                errors[0] += 1
                return
            latencies.append(time.perf_counter() - t0)


async def _run(url: str, duration: float, connections: int) -> dict[str, Any]:
    from kernel_benchmarks.loadgen import _percentile

    latencies: list[float] = []
    errors = [0]
    start = time.monotonic()
    results = await asyncio.gather(
        *(_client(url, start + duration, latencies, errors) for _ in range(connections)), return_exceptions=True
    )
    seconds = time.monotonic() - start
    errors[0] += sum(1 for r in results if isinstance(r, BaseException))
    lat = sorted(latencies)
    return {
        "requests": len(lat),
        "seconds": seconds,
        "bytes": len(lat) * len(MESSAGE),
        "errors": errors[0],
        "p50_ms": _percentile(lat, 50) * 1000,
        "p90_ms": _percentile(lat, 90) * 1000,
        "p99_ms": _percentile(lat, 99) * 1000,
        "p999_ms": _percentile(lat, 99.9) * 1000,
        "max_ms": (lat[-1] if lat else 0.0) * 1000,
    }


def ws_load(url: str, *, duration: float, connections: int) -> LoadResult:
    """Run the echo clients in a child process; their result."""
    out = subprocess.run(
        [sys.executable, "-m", "kernel_benchmarks.websocket", url, str(duration), str(connections)],
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"WebSocket load failed: {out.stderr.strip().splitlines()[-1:]}")
    return LoadResult(**json.loads(out.stdout))


def main(argv: list[str]) -> int:
    url, duration, connections = argv[0], float(argv[1]), int(argv[2])
    from kernel.launch import install_event_loop_policy

    install_event_loop_policy()
    print(json.dumps(asyncio.run(_run(url, duration, connections))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


def ws_rows(bench: Bench, server: str) -> list[Row]:
    """``baseline-ws-echo`` (in-process Starlette) and ``ws-echo`` (through gateway and worker)."""
    import statistics

    from kernel_benchmarks.procs import BENCH_PLUGIN, KernelSetup  # psutil: not in the load's own process

    o = bench.o

    def measure(url: str) -> tuple[LoadResult, float]:
        if o.warmup > 0:
            ws_load(url, duration=o.warmup, connections=o.connections)
        results = [ws_load(url, duration=o.duration, connections=o.connections) for _ in range(o.runs)]
        rps = statistics.median(r.rps for r in results)
        return results[len(results) // 2], rps

    def row(scenario: str, url: str, tree: Any, variant: str, note: str) -> dict[str, Any]:
        from kernel_benchmarks.procs import RssSampler

        with RssSampler(tree, interval=0.25) as sampler:
            res, rps = measure(url)
        peaks = {"gateway_rss_mb": sampler.peak_of("gateway"), "worker_rss_mb": sampler.peak_of("worker", BENCH_PLUGIN)}
        return new_row(
            scenario, server, variant, rps=round(rps), p50_ms=round(res.p50_ms, 2), p99_ms=round(res.p99_ms, 2),
            p999_ms=round(res.p999_ms, 2), errors=res.errors, rss_mb=sampler.total(), seconds=round(res.seconds, 2),
            loadgen=f"aiohttp ws x{o.connections}", note=note, **(peaks if variant else {}),
        )  # fmt: skip

    rows = []
    with bench.baseline(server) as b:
        url = b.url.replace("http://", "ws://") + "/ws-echo"
        rows.append(row("baseline-ws-echo", url, b.tree, "", "in-process Starlette WebSocket, 64 B echo"))
    with bench.kernel(KernelSetup(server)) as k:
        url = k.url.replace("http://", "ws://") + f"/api/{BENCH_PLUGIN}/ws-echo"
        rows.append(row("ws-echo", url, k.tree, "1gw/1wk", "64 B echo through gateway and worker"))
    return rows

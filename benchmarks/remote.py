"""``remote``: hello through a worker over ``tcp://`` with CurveZMQ against the same over ``ipc://``, in one run.

Two kernels serve the bench plugin side by side on loopback: one with its local worker (``ipc://``),
one with no local worker and a ``kernel worker`` joined over ``tcp://127.0.0.1`` with CURVE
(docs/remote-workers.md). The load alternates between them (ipc, curve, ipc, curve...) so that drift
of the machine falls on both alike. Rows ``hello-ipc`` and ``hello-curve``; the second's ratio is its
req/s over the first's (issue 20's target: at least 0.8), and its note gives the cost of the tcp+CURVE
hop per request: the difference of the two in machine time per request (1 / req/s) and in median latency.
Rows ``hop-ipc`` and ``hop-curve`` time the hop alone, without HTTP: sequential round trips of a
512-byte frame through one ROUTER socket bound both ways, the encryption's cost per round trip.
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import zmq

from kernel.transport.curve import ClientKeys, CurveServer, generate
from kernel_benchmarks.procs import BENCH_PLUGIN, KernelSetup
from kernel_benchmarks.rows import Row, new_row
from kernel_benchmarks.scenario import Bench
from kernel_benchmarks.side_by_side import alternate

#: the hop rows: a frame about the size of a small request's head, round trips measured and warm-up
HOP_FRAME = 512
HOP_TRIPS = 20_000
HOP_WARMUP = 1_000


def _free_ports(count: int) -> int:
    """The first of ``count`` consecutive ports free now on 127.0.0.1 (the join port, then the gateways')."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            first = int(s.getsockname()[1])
        if first + count > 65535:
            continue
        try:
            for port in range(first, first + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    raise RuntimeError("no free consecutive ports on 127.0.0.1")


def remote_rows(bench: Bench, server: str) -> list[Row]:
    keys = Path(tempfile.mkdtemp(prefix="kernel-bench-curve-"))
    generate(keys, "server")
    generate(keys, "worker", plugins=[BENCH_PLUGIN])
    allowed = keys / "allowed"
    allowed.mkdir()
    (allowed / "worker.key").write_bytes((keys / "worker.key").read_bytes())
    port = _free_ports(2)
    remote = {
        "listen": f"127.0.0.1:{port}",
        "serverKey": str(keys / "server.key_secret"),
        "allowedKeys": str(allowed),
    }
    curve_setup = KernelSetup(server, replicas=0, config={"backend": {"workers": {"remote": remote}}})
    worker: subprocess.Popen[bytes] | None = None
    with bench.kernel(KernelSetup(server)) as ipc, bench.spawned(curve_setup) as curve:
        curve.spawn()
        argv = [
            sys.executable,
            "-m",
            "kernel.cli",
            "worker",
            "--plugin",
            BENCH_PLUGIN,
            "--join",
            f"tcp://127.0.0.1:{port}",
        ]
        argv += ["--server-key", str(keys / "server.key"), "--key", str(keys / "worker.key_secret")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([*curve.kp.paths, os.environ.get("PYTHONPATH", "")])}
        env["KERNEL_LOG_LEVEL"] = os.environ.get("KERNEL_LOG_LEVEL", "warning")
        worker = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            curve.wait_ready(90)  # every plugin has a worker: the bench plugin's joined
            hello = f"{curve.url}/api/{BENCH_PLUGIN}/hello"
            results = alternate(bench, {"hello-ipc": f"{ipc.url}/api/{BENCH_PLUGIN}/hello", "hello-curve": hello})
        finally:
            worker.terminate()  # it asks to leave, drains, exits 0
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
    hops = _hop_rows(keys, server)
    shutil.rmtree(keys, ignore_errors=True)
    rows = []
    for name, runs in results.items():
        rows.append(
            new_row(
                name, server, "1gw/1wk",
                rps=round(statistics.median(r.rps for r in runs)),
                p50_ms=round(statistics.median(r.p50_ms for r in runs), 2),
                p99_ms=round(statistics.median(r.p99_ms for r in runs), 2),
                errors=sum(r.errors for r in runs),
                seconds=round(statistics.median(r.seconds for r in runs), 2),
                loadgen=bench.gen.name,
                note="local worker over ipc://" if name == "hello-ipc" else "remote worker over tcp:// + CURVE",
            )
        )  # fmt: skip
    ipc_row, curve_row = rows
    if ipc_row["rps"] and curve_row["rps"]:
        curve_row["ratio"] = round(curve_row["rps"] / ipc_row["rps"], 3)
        curve_row["ratio_of"] = "hello-ipc rps"
        per_request_us = (1 / curve_row["rps"] - 1 / ipc_row["rps"]) * 1e6
        latency_us = (curve_row["p50_ms"] - ipc_row["p50_ms"]) * 1000
        curve_row["note"] += f"; {per_request_us:+.1f} us machine time/request, {latency_us:+.0f} us p50; target >= 0.8"
    return rows + hops


def _hop_rows(keys: Path, server: str) -> list[Row]:
    """The hop alone: round trips of a request-sized frame through one ROUTER, over ipc and over tcp+CURVE."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    ipc = f"ipc://{keys}/hop.sock"
    router.bind(ipc)
    curve = CurveServer(keys / "server.key_secret", keys / "allowed", 10.0, "bench")
    tcp = f"tcp://127.0.0.1:{_free_ports(1)}"
    curve.bind(router, tcp)
    stop = threading.Event()

    def echo() -> None:
        while not stop.is_set():
            if router.poll(100):
                router.send_multipart(router.recv_multipart())

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    frame = b"x" * HOP_FRAME
    timings: dict[str, float] = {}
    try:
        for name, endpoint, client_keys in (
            ("hop-ipc", ipc, None),
            ("hop-curve", tcp, ClientKeys.load(keys / "server.key", keys / "worker.key_secret")),
        ):
            dealer = ctx.socket(zmq.DEALER)
            dealer.setsockopt(zmq.LINGER, 0)
            if client_keys is not None:
                client_keys.apply(dealer)
            dealer.connect(endpoint)
            for _ in range(HOP_WARMUP):
                dealer.send(frame)
                dealer.recv()
            t0 = time.perf_counter()
            for _ in range(HOP_TRIPS):
                dealer.send(frame)
                dealer.recv()
            timings[name] = (time.perf_counter() - t0) / HOP_TRIPS * 1e6
            dealer.close(0)
    finally:
        stop.set()
        thread.join()
        curve.close()
        router.close(0)
        ctx.term()
    extra = timings["hop-curve"] - timings["hop-ipc"]
    return [
        new_row(
            name, server, f"{HOP_FRAME} B",
            rps=round(1e6 / us),
            p50_ms=round(us / 1000, 4),
            note=f"{HOP_TRIPS} round trips, {us:.1f} us each"
            + (f"; tcp+CURVE: {extra:+.1f} us per round trip" if name == "hop-curve" else ""),
        )
        for name, us in timings.items()
    ]  # fmt: skip

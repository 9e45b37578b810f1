"""The ``memory`` scenario: what each plugin costs in memory and start time, workers spawned and forked.

For each way of starting workers (``spawn``: ``backend.workers.zygote: false``; ``zygote``: forked
from the zygote), in the same run:

- the total PSS (``/proc/<pid>/smaps_rollup``: shared pages split between the processes sharing them)
  of every process of the kernel (supervisor, gateway, zygote, workers) once idle and ready, with the
  plugins of the environment plus the bench ones (``base``), and with generated hello-like plugins
  added up to ``PLUGINS`` (``20 plugins``); the seconds from spawning ``kernel serve`` to readiness;
- the PSS each added plugin costs: the difference of those totals over the plugins added;
- a worker's start (its process first seen -> its route answers) and restart (``kill -9`` -> its route
  answers again, the restart delay included), medians over ``--trials`` kills;
- Backstage's idle PSS with its one plugin (``benchmarks.peer_memory``; skipped with one line without
  Node), which the targets compare with the kernel's totals at 5 and 20 plugins: the 20 measured, the
  5 taken from the smallest kernel measured less its extra plugins at the per-plugin cost (installed
  plugins cannot be left out yet).
"""

from __future__ import annotations

import os
import signal
import statistics
import time
from importlib.metadata import entry_points

from kernel_benchmarks.peer_memory import PeerUnavailable, backstage_idle_pss_mb
from kernel_benchmarks.procs import BENCH_PLUGIN, PEER_PLUGIN, Kernel, KernelSetup
from kernel_benchmarks.rows import Row, http_status, new_row
from kernel_benchmarks.scenario import Bench

#: the most plugins a kernel of this scenario runs
PLUGINS = 20
#: seconds the processes get to settle after readiness before their PSS is read
SETTLE = 1.0
MB = 1024 * 1024


def pss_mb(pid: int) -> float | None:
    """Proportional set size of ``pid`` in MiB; ``None`` when it cannot be read (gone, not Linux)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024 / MB
    except (OSError, ValueError):
        return None
    return None


def total_pss(k: Kernel) -> tuple[float, int]:
    """Total PSS of every process of the kernel (MiB), and how many processes."""
    assert k.tree is not None
    values = [v for p in k.tree.refresh() if (v := pss_mb(p.pid)) is not None]
    return round(sum(values), 1), len(values)


def memory_rows(bench: Bench, server: str) -> list[Row]:
    installed = {ep.name for ep in entry_points(group="kernel.plugins") if ":" in ep.value}  # plugins, not hooks
    base = len(installed | {BENCH_PLUGIN, PEER_PLUGIN})
    rows: list[Row] = []
    for mode in ("spawn", "zygote"):
        config = {"backend": {"workers": {"zygote": mode == "zygote"}}}
        totals: dict[int, float] = {}
        for plugins in sorted({base, max(base, PLUGINS)}):
            setup = KernelSetup(server, extra_plugins=plugins - base, config=config)
            with bench.spawned(setup) as k:
                t0 = k.spawn()
                k.wait_ready(60.0)
                ready = time.monotonic() - t0
                time.sleep(SETTLE)
                total, procs = total_pss(k)
                totals[plugins] = total
                rows.append(
                    new_row(
                        "memory",
                        server,
                        f"{mode}, {plugins} plugins",
                        pss_mb=total,
                        seconds=round(ready, 3),
                        note=f"total PSS {total:.1f} MB of {procs} processes; seconds: spawn to readiness",
                    )
                )
                if plugins == base:
                    rows += _start_rows(bench, k, server, mode)
        if len(totals) > 1:
            (few, low), (many, high) = sorted(totals.items())[0], sorted(totals.items())[-1]
            rows.append(
                new_row(
                    "memory-per-plugin",
                    server,
                    mode,
                    pss_mb=round((high - low) / (many - few), 2),
                    note=f"{(high - low) / (many - few):.1f} MB = (PSS with {many} plugins - with {few}) / {many - few}",
                )
            )
    try:
        backstage = backstage_idle_pss_mb()
    except PeerUnavailable as exc:
        print(f"memory: Backstage's PSS not measured: {exc}", flush=True)
    else:
        rows.append(new_row("memory-backstage", server, "1 plugin", pss_mb=backstage, note="idle, NODE_ENV=production"))
    return rows


def _start_rows(bench: Bench, k: Kernel, server: str, mode: str) -> list[Row]:
    """``kill -9`` the bench worker ``--trials`` times: its replacement's start, and the whole restart."""
    url = f"{k.url}/api/{BENCH_PLUGIN}/hello"
    starts: list[float] = []
    restarts: list[float] = []
    for _ in range(bench.o.trials):
        (victim,) = k.workers()
        t0 = time.monotonic()
        os.kill(victim.pid, signal.SIGKILL)
        born = None
        deadline = t0 + 30
        while True:
            if born is None:
                new = [w for w in k.workers() if w.pid != victim.pid]
                if new:  # first seen (polled every 2 ms; /proc's start time is coarser than that)
                    born = time.monotonic()
            if born is not None and http_status(url, timeout=2.0) == 200:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the killed bench worker did not come back within 30 s")
            time.sleep(0.002)
        done = time.monotonic()
        restarts.append(done - t0)
        if born is not None:
            starts.append(max(0.0, done - max(born, t0)))
        k.wait_ready()
    note = f"median of {len(restarts)} kills, max {{:.3f}}s"
    return [
        new_row(
            "worker-start", server, mode, seconds=round(statistics.median(starts), 3), note=note.format(max(starts))
        ),
        new_row(
            "worker-restart",
            server,
            mode,
            seconds=round(statistics.median(restarts), 3),
            note=note.format(max(restarts)) + "; includes restartInitialDelay",
        ),
    ]

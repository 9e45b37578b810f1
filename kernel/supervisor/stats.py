"""The figures of every process, sampled by the supervisor on each heartbeat tick.

Memory and CPU come from ``/proc`` (Linux; zero elsewhere), a worker's requests in flight and
handler latencies from its heartbeats, round trips from the heartbeats it answers. Each tick
the gateways get them as one ``Stats`` message: the metrics endpoint, the dashboard and
``kernel status`` read the same picture from whichever gateway answers them.

Restarts and recycles are counted per plugin for the kernel's lifetime (monotonic counters),
and a dead process's share of the shared metrics files is settled here (``on_exit``).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterable

from kernel.metrics.files import ENV, compact
from kernel.protocol import ProcessSample, Stats
from kernel.supervisor.children import Child

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` in bytes; 0 when it cannot be read (gone, not Linux)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time ``pid`` used so far; 0 when it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()  # after the command name, which may hold spaces
        return (int(fields[11]) + int(fields[12])) / _TICK
    except (OSError, ValueError, IndexError):
        return 0.0


class StatsKeeper:
    """Counts restarts and recycles, and samples every process into a ``Stats`` message."""

    def __init__(self) -> None:
        self.restarts: Counter[str] = Counter()
        self.recycles: Counter[str] = Counter()
        self._started_at = time.time()
        self._served: dict[str, tuple[float, int]] = {}  # ident -> (when, served) at the last sample

    def restarted(self, plugin_id: str) -> None:
        self.restarts[plugin_id] += 1

    def recycled(self, plugin_id: str) -> None:
        self.recycles[plugin_id] += 1

    def on_exit(self, child: Child) -> None:
        """A child ended: its live gauges leave the shared metrics files, the rest is compacted."""
        self._served.pop(child.ident, None)
        directory = os.environ.get(ENV)
        if directory:
            from prometheus_client import multiprocess

            # a sandboxed worker's files are named by the number it was given, not its pid
            name = getattr(child.process, "metrics_id", child.process.pid)
            multiprocess.mark_process_dead(name)  # type: ignore[no-untyped-call]
            compact(directory, name)

    def sample(self, children: Iterable[Child], log_lines_dropped: dict[str, dict[str, int]] | None = None) -> Stats:
        now = time.time()
        me = os.getpid()
        own = ProcessSample(
            "supervisor", "supervisor", me, "", "ready", self._started_at, rss_bytes(me), cpu_seconds(me)
        )
        processes = [own, *(self._child(child, now) for child in children)]
        return Stats(now, processes, dict(self.restarts), dict(self.recycles), log_lines_dropped or {})

    def _child(self, child: Child, now: float) -> ProcessSample:
        pid = child.process.pid
        beat = child.beat
        rps = 0.0
        if child.kind == "worker":
            before = self._served.get(child.ident)
            if before is not None and now > before[0]:
                rps = max(0, child.served - before[1]) / (now - before[0])
            self._served[child.ident] = (now, child.served)
        return ProcessSample(
            child.kind,
            child.ident,
            pid,
            plugin_id=child.plugin_id,
            state=child.state(),
            started_at=child.started_at,
            rss_bytes=rss_bytes(pid),
            cpu_seconds=cpu_seconds(pid),
            heartbeat_rtt_ms=round(child.rtt_ms, 3),
            served=child.served,
            in_flight=beat.in_flight if beat is not None else 0,
            rps=round(rps, 2),
            p50_ms=round(beat.p50_ms, 3) if beat is not None else 0.0,
            p99_ms=round(beat.p99_ms, 3) if beat is not None else 0.0,
        )

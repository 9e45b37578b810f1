"""The core services' metrics, written by each worker into the kernel's shared metrics files.

``kernel.metrics`` serves them with every other process's: per plugin, the cache's hits and
misses, the scheduler's task runs (by result) and their durations, and the database pool's
connections (in use, and open). Each metric is made on first use, so a worker that never
touches a service adds nothing to the scrape.
"""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def _metric(name: str) -> Any:
    from prometheus_client import Counter, Gauge, Histogram

    if name == "cache":
        return Counter(
            "kernel_cache_requests", "Cache lookups by plugin and result (hit, miss)", ["plugin_id", "result"]
        )
    if name == "task_runs":
        return Counter(
            "kernel_scheduler_task_runs",
            "Scheduled task runs by result (succeeded, failed)",
            ["plugin_id", "task_id", "result"],
        )
    if name == "task_seconds":
        return Histogram(
            "kernel_scheduler_task_duration_seconds",
            "How long scheduled task runs took",
            ["plugin_id", "task_id"],
            buckets=(0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0),
        )
    if name == "pool":
        return Gauge(
            "kernel_database_pool_connections",
            "Database connections of each plugin's pool, by state (in_use, open)",
            ["plugin_id", "state"],
            multiprocess_mode="livesum",
        )
    raise KeyError(name)


def cache_lookup(plugin_id: str, hit: bool) -> None:
    _metric("cache").labels(plugin_id, "hit" if hit else "miss").inc()


def task_run(plugin_id: str, task_id: str, seconds: float, failed: bool) -> None:
    _metric("task_runs").labels(plugin_id, task_id, "failed" if failed else "succeeded").inc()
    _metric("task_seconds").labels(plugin_id, task_id).observe(seconds)


def pool_use(plugin_id: str, in_use: int, size: int) -> None:
    gauge = _metric("pool")
    gauge.labels(plugin_id, "in_use").set(in_use)
    gauge.labels(plugin_id, "open").set(size)

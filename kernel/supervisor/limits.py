"""Each worker's limits, checked by the supervisor on every heartbeat tick.

Resident memory is read from ``/proc/<pid>/statm`` (Linux). Above a plugin's soft
limit a worker is recycled gracefully: a replacement starts, takes over once ready,
and the old one drains (``kernel.supervisor.replace``). Above the hard limit it is
killed at once and restarted like any dead worker (it counts towards flapping). After
``maxRequests`` requests a worker is recycled like above the soft limit.

``check_limits`` gets only what it needs: the children, each plugin's limits, and how to recycle one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from kernel.settings import WorkerLimits
from kernel.supervisor.children import Child
from kernel.supervisor.stats import rss_bytes

log = logging.getLogger("kernel")


def rss_mb(pid: int) -> float | None:
    """Resident memory of ``pid`` in MiB, or ``None`` when it cannot be read (gone, not Linux)."""
    return (rss_bytes(pid) / (1024 * 1024)) or None


def check_limits(
    children: Iterable[Child], limits_of: Callable[[str], WorkerLimits], recycle: Callable[[Child, str], None]
) -> None:
    """Recycle (``recycle(child, why)``) or kill the workers over their plugin's limits (``limits_of(plugin_id)``)."""
    for child in list(children):
        if child.kind != "worker" or not child.ready or child.retiring or child.recycling:
            continue
        limits = limits_of(child.plugin_id)
        rss = rss_mb(child.process.pid) if limits.memory_soft_mb or limits.memory_hard_mb else None
        if rss is not None and limits.memory_hard_mb and rss > limits.memory_hard_mb:
            log.error(
                "worker %s of plugin '%s' uses %.0f MB, over its hard memory limit of %d MB; killing it",
                child.ident, child.plugin_id, rss, limits.memory_hard_mb,
            )  # fmt: skip
            child.process.kill()
            continue
        why = ""
        if rss is not None and limits.memory_soft_mb and rss > limits.memory_soft_mb:
            why = f"worker {child.ident} uses {rss:.0f} MB, over its soft memory limit of {limits.memory_soft_mb} MB"
        elif limits.max_requests and child.served >= limits.max_requests:
            why = f"worker {child.ident} served {child.served} requests (maxRequests {limits.max_requests})"
        if why:
            child.recycling = True
            recycle(child, why)

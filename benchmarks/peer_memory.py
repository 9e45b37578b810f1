"""Backstage's idle PSS, for the memory scenario: start the reference backend, read, stop.

The memory targets compare the kernel's total PSS with Backstage's ("kernel with 5 plugins <=
Backstage with 1 plugin", "20 plugins <= 2x Backstage"). ``backstage_idle_pss_mb()`` starts the
``peers`` scenario's Backstage backend (``benchmarks/backstage/peer_backend.js``, ``NODE_ENV=production``)
with its one ``bench`` plugin (``proxy=True`` adds the proxy plugin), waits for its first 200, lets
it settle, reads the PSS of its process tree (``/proc/<pid>/smaps_rollup``), stops it and proves
it gone. Without Node or the packages it raises ``PeerUnavailable`` with the one-line reason.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path

from kernel_benchmarks.peer import BackstagePeer, PeerUnavailable, backstage_unavailable

__all__ = ["PeerUnavailable", "backstage_idle_pss_mb"]

#: an upstream nobody listens on: the proxy plugin only connects when a request comes
NO_UPSTREAM = "http://127.0.0.1:9"


def backstage_idle_pss_mb(
    work: Path | None = None, *, proxy: bool = False, settle: float = 2.0, readings: int = 3
) -> float:
    """PSS (MiB) of an idle Backstage backend with the ``bench`` plugin (and the proxy's with ``proxy``):
    the median of ``readings`` reads 0.2 s apart, ``settle`` seconds after its first 200."""
    reason = backstage_unavailable()
    if reason is not None:
        raise PeerUnavailable(reason)
    own = work is None
    log_dir = Path(tempfile.mkdtemp(prefix="backstage-pss-")) if work is None else work
    peer = BackstagePeer(log_dir, upstream=NO_UPSTREAM if proxy else None)
    try:
        peer.start()
        time.sleep(settle)
        values = []
        for _ in range(readings):
            values.append(peer.pss())
            time.sleep(0.2)
        return round(statistics.median(values), 1)
    finally:
        peer.stop()
        if own:
            shutil.rmtree(log_dir, ignore_errors=True)

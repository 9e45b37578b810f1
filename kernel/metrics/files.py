"""The directory every process of one kernel writes its metrics into (``PROMETHEUS_MULTIPROC_DIR``).

The supervisor makes a fresh one at start (never one already set in its environment: it is
emptied and removed at exit) and its children inherit it. A process that ends leaves its
counters and histograms behind, so the sums never go back; its live gauges are dropped
(``kernel.supervisor.stats``).
"""

from __future__ import annotations

import os
import shutil
import tempfile

ENV = "PROMETHEUS_MULTIPROC_DIR"


def make_directory() -> str:
    """A new, empty directory for this kernel's metrics, set in the environment children inherit."""
    path = tempfile.mkdtemp(prefix="kernel-metrics-")
    os.environ[ENV] = path
    return path


def remove_directory(path: str) -> None:
    if os.environ.get(ENV) == path:
        del os.environ[ENV]
    shutil.rmtree(path, ignore_errors=True)

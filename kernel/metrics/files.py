"""The directory every process of one kernel writes its metrics into (``PROMETHEUS_MULTIPROC_DIR``).

The supervisor makes a fresh one at start (never one already set in its environment: it is
emptied and removed at exit) and its children inherit it. A process that ends leaves its
counters and histograms behind, so the sums never go back; its live gauges are dropped
(``kernel.supervisor.stats``).

Left alone, a kernel that recycles workers for days would gather a file per dead process and
type, and every scrape reads them all. ``compact`` folds a dead process's files into one
accumulated file per type (``counter_compacted.db``, ...): counters, histograms and summaries
added key by key, gauges merged by their mode (``sum`` added, ``max``/``min`` kept,
``mostrecent`` by time). The scrape (``reading``) and the compaction (an exclusive lock on the
directory's ``.lock``) never overlap, so a scrape sees a dead process's figures exactly once,
in its own file or in the compacted one: the totals never jump or go back. Gauges in the
``all`` mode (a series per pid, the library's default for a plugin's own gauges) keep their
files: their series are per process by design.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager

ENV = "PROMETHEUS_MULTIPROC_DIR"
#: a number this process's metrics files are named by in place of its pid (a sandboxed worker's pid is the
#: same in every sandbox: ``kernel.supervisor.sandbox``)
ID_ENV = "KERNEL_METRICS_ID"
#: the name part of the accumulated files, in place of a pid
COMPACTED = "compacted"
_LOCK = ".lock"
#: how two values of one key merge: (old value, old time), (new value, new time) -> merged
_Merge = Callable[[tuple[float, float], tuple[float, float]], tuple[float, float]]


def _add(old: tuple[float, float], new: tuple[float, float]) -> tuple[float, float]:
    return old[0] + new[0], max(old[1], new[1])


def _latest(old: tuple[float, float], new: tuple[float, float]) -> tuple[float, float]:
    return new if new[1] >= old[1] else old


#: file prefix (its name up to the pid) -> how its values merge
_MERGES: dict[str, _Merge] = {
    "counter": _add,
    "histogram": _add,
    "summary": _add,
    "gauge_sum": _add,
    "gauge_max": lambda old, new: max(old, new, key=lambda v: v[0]),
    "gauge_min": lambda old, new: min(old, new, key=lambda v: v[0]),
    "gauge_mostrecent": _latest,
}


def make_directory() -> str:
    """A new, empty directory for this kernel's metrics, set in the environment children inherit."""
    path = tempfile.mkdtemp(prefix="kernel-metrics-")
    os.environ[ENV] = path
    return path


def remove_directory(path: str) -> None:
    if os.environ.get(ENV) == path:
        del os.environ[ENV]
    shutil.rmtree(path, ignore_errors=True)


def name_files_by_id() -> None:
    """Name this process's metrics files by ``ID_ENV`` rather than its pid, when the launcher gave one.

    Called at start-up, before any metric exists (prometheus-client reads the name at each metric's creation).
    """
    ident = os.environ.get(ID_ENV)
    if ident and os.environ.get(ENV):
        from prometheus_client import values

        number = int(ident)
        values.ValueClass = values.MultiProcessValue(process_identifier=lambda: number)  # type: ignore[no-untyped-call]


@contextmanager
def _locked(directory: str, how: int) -> Iterator[None]:
    fd = os.open(os.path.join(directory, _LOCK), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, how)
        yield
    finally:
        os.close(fd)  # closing releases the lock


@contextmanager
def reading(directory: str) -> Iterator[None]:
    """Hold while a scrape reads the files: no compaction moves figures meanwhile."""
    with _locked(directory, fcntl.LOCK_SH):
        yield


def compact(directory: str, pid: int) -> int:
    """Fold the files of dead process ``pid`` into the compacted ones; the number of files folded."""
    from prometheus_client.mmap_dict import MmapedDict

    folded = 0
    with _locked(directory, fcntl.LOCK_EX):
        for prefix, merge in _MERGES.items():
            dead = os.path.join(directory, f"{prefix}_{pid}.db")
            if not os.path.exists(dead):
                continue
            values = MmapedDict.read_all_values_from_file(dead)  # type: ignore[no-untyped-call]
            into = MmapedDict(os.path.join(directory, f"{prefix}_{COMPACTED}.db"))  # type: ignore[no-untyped-call]
            try:
                for key, value, timestamp, _pos in values:
                    if key in into._positions:  # the library's own index of the keys it holds
                        old = into.read_value(key)  # type: ignore[no-untyped-call]
                        value, timestamp = merge(old, (value, timestamp))
                    into.write_value(key, value, timestamp)  # type: ignore[no-untyped-call]
            finally:
                into.close()  # type: ignore[no-untyped-call]
            os.remove(dead)
            folded += 1
    return folded

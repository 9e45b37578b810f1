"""The kernel's output: every child writes to a pipe of its own, the supervisor relays whole lines.

A child's stdout and stderr are the write end of a pipe the supervisor made for it (``pipe``): a
spawned child gets it from ``subprocess``, a forked worker from the zygote (``SCM_RIGHTS``, as its
stdin). The supervisor reads every pipe on its event loop, never blocking, and cuts what it reads
into lines (a line longer than ``MAX_LINE`` is cut there), so no two children's half lines are
ever interleaved, whatever they write.

**A rate per plugin.** Each plugin's lines pass a token bucket (``backend.logging.rate``, or its
own ``backend.logging.plugins.<id>.rate``): past it, lines are dropped. A worker cannot bypass it:
its only way to the kernel's output is its pipe. Gateways and the supervisor itself are not limited.

**A slow reader stalls nobody.** Lines go to the kernel's stderr through a bounded buffer
(``BUFFER_BYTES``) that one writer thread empties with blocking writes: when whatever reads the
kernel's output is slower than the lines arrive, or stops reading, the buffer fills and further
lines are dropped; no child ever waits on its pipe, since the supervisor always reads it. The
supervisor's own log lines take the same way (``stream``).

Dropped lines are counted per plugin and cause (``rate``: over its rate; ``backlog``: the output
not read fast enough; kernel processes count under ``kernel``), exposed as
``kernel_log_lines_dropped_total{plugin_id, reason}``, and summarized in one line per plugin and
cause every ``SUMMARY_INTERVAL`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from kernel.settings import LoggingSettings, LogRate

log = logging.getLogger("kernel")
#: the longest line relayed whole: a longer one is cut into lines of this size
MAX_LINE = 64 * 1024
#: bytes waiting for the kernel's output at most; lines past it are dropped
BUFFER_BYTES = 4 * 1024 * 1024
#: seconds between two summaries of dropped lines
SUMMARY_INTERVAL = 10.0
#: the name kernel processes' (supervisor, gateways, zygote) lines are counted under
KERNEL = "kernel"


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` at once; rate 0: no limit."""

    def __init__(self, rate: LogRate) -> None:
        self.rate = rate
        self._tokens = float(rate.burst)
        self._at = time.monotonic()

    def take(self, now: float, wanted: int = 1) -> int:
        """How many of ``wanted`` lines may pass now (the first ones)."""
        rate = self.rate.lines_per_second
        if rate <= 0:
            return wanted
        self._tokens = min(float(self.rate.burst), self._tokens + (now - self._at) * rate)
        self._at = now
        granted = min(wanted, int(self._tokens))
        self._tokens -= granted
        return granted


class _Output:
    """A bounded buffer of whole lines and the thread that writes them to ``fd``, blocking only itself."""

    def __init__(self, fd: int, limit: int) -> None:
        self.fd = fd
        self.limit = limit
        self._lines: deque[bytes] = deque()
        self._size = 0
        self._cond = threading.Condition()
        self._closed = False
        self._writing = False
        self._thread: threading.Thread | None = None

    def offer(self, data: bytes) -> bool:
        """Queue ``data`` (whole lines); ``False``: dropped, the buffer is full."""
        with self._cond:
            if self._size + len(data) > self.limit or self._closed:
                return False
            self._lines.append(data)
            self._size += len(data)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="kernel-log-output", daemon=True)
                self._thread.start()
            self._cond.notify()
            return True

    def close(self, timeout: float) -> None:
        """Write what is queued, waiting ``timeout`` seconds at most (the reader may never read it)."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._lines and not self._closed:
                    self._cond.wait()
                if not self._lines:
                    return
                chunk = b"".join(self._lines)
                self._lines.clear()
                self._size = 0
            view = memoryview(chunk)
            try:
                while view:
                    view = view[os.write(self.fd, view) :]
            except OSError:  # nobody reads the output any more: drop it
                pass


@dataclass
class _Source:
    """One child's pipe: the plugin it counts under, and the start of a line not finished yet."""

    plugin_id: str
    partial: bytearray = field(default_factory=bytearray)


class LogRelay:
    """Reads each child's pipe on the running loop and relays its lines, within its plugin's rate."""

    def __init__(self, settings: LoggingSettings, out_fd: int = 2, *, buffer_bytes: int = BUFFER_BYTES) -> None:
        self.settings = settings
        self._output = _Output(out_fd, buffer_bytes)
        self._buckets: dict[str, TokenBucket] = {}
        self._sources: dict[int, _Source] = {}
        #: (plugin id, cause) -> lines dropped since the kernel started
        self.dropped: Counter[tuple[str, str]] = Counter()
        self._summarized: Counter[tuple[str, str]] = Counter()
        self._summary_at = time.monotonic()

    def configure(self, settings: LoggingSettings) -> None:
        """New rates (a reloaded config); each plugin's bucket starts full again."""
        self.settings = settings
        self._buckets.clear()

    def pipe(self, plugin_id: str = "") -> int:
        """A new pipe read on the loop, its lines counted under ``plugin_id`` (none: a kernel process); the
        write end, to give a child and then close."""
        read, write = os.pipe()
        os.set_blocking(read, False)
        self._sources[read] = _Source(plugin_id or KERNEL)
        asyncio.get_running_loop().add_reader(read, self._readable, read)
        return write

    @property
    def open_pipes(self) -> int:
        """Pipes with a writer still open (a pipe is forgotten once it is read to its end)."""
        return len(self._sources)

    def _readable(self, fd: int) -> None:
        self._read(fd)

    def _read(self, fd: int) -> bool:
        """Relay what ``fd`` holds; ``False`` when it held nothing (or is gone)."""
        source = self._sources[fd]
        try:
            data = os.read(fd, 256 * 1024)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data:  # every writer closed it: the child is gone
            self._forget(fd)
            return False
        buf = source.partial
        buf += data
        end = buf.rfind(b"\n")
        if end >= 0:  # the whole lines, as one block: split only when some must be dropped
            self._lines(source.plugin_id, bytes(buf[: end + 1]))
            del buf[: end + 1]
        while len(buf) >= MAX_LINE:  # a line too long to wait for its end: cut it
            self._lines(source.plugin_id, bytes(buf[:MAX_LINE]) + b"\n")
            del buf[:MAX_LINE]
        return True

    def _forget(self, fd: int) -> None:
        source = self._sources.pop(fd)
        asyncio.get_running_loop().remove_reader(fd)
        os.close(fd)
        if source.partial:  # its last line, unfinished
            self._lines(source.plugin_id, bytes(source.partial) + b"\n")

    def _lines(self, plugin_id: str, block: bytes) -> None:
        """Relay ``block`` (whole lines) within ``plugin_id``'s rate; the kernel's own are not limited."""
        count = block.count(b"\n")
        passed = count
        if plugin_id != KERNEL:
            bucket = self._buckets.get(plugin_id)
            if bucket is None:
                bucket = self._buckets[plugin_id] = TokenBucket(self.settings.rate_of(plugin_id))
            passed = bucket.take(time.monotonic(), count)
            if passed < count:
                self.dropped[plugin_id, "rate"] += count - passed
                block = b"".join(line + b"\n" for line in block.split(b"\n")[:passed])
        if passed and not self._output.offer(block):
            self.dropped[plugin_id, "backlog"] += passed

    def write(self, text: str) -> None:
        """Kernel lines (the supervisor's own log): through the same buffer, never blocking."""
        if not self._output.offer(text.encode(errors="replace")):
            self.dropped[KERNEL, "backlog"] += text.count("\n") or 1

    def flush(self) -> None:
        pass

    def summarize(self, now: float | None = None) -> None:
        """Once every ``SUMMARY_INTERVAL`` seconds: one line per plugin and cause that lost lines meanwhile."""
        now = time.monotonic() if now is None else now
        elapsed = now - self._summary_at
        if elapsed < SUMMARY_INTERVAL:
            return
        self._summary_at = now
        for (plugin_id, cause), total in sorted(self.dropped.items()):
            lost = total - self._summarized[plugin_id, cause]
            if not lost:
                continue
            self._summarized[plugin_id, cause] = total
            who = "the kernel" if plugin_id == KERNEL else f"plugin '{plugin_id}'"
            if cause == "rate":
                rate = self.settings.rate_of(plugin_id)
                why = f"rate limit {rate.lines_per_second:g}/s, burst {rate.burst}"
            else:
                why = "the kernel's output is not read fast enough"
            log.warning("%s: %d log lines dropped in the last %.0f s (%s)", who, lost, elapsed, why)

    def counts(self) -> dict[str, dict[str, int]]:
        """Lines dropped since the kernel started: cause -> plugin id -> count."""
        out: dict[str, dict[str, int]] = {}
        for (plugin_id, cause), n in self.dropped.items():
            out.setdefault(cause, {})[plugin_id] = n
        return out

    def close(self, timeout: float = 2.0) -> None:
        """Relay what the pipes still hold, then write what is queued (``timeout`` seconds at most)."""
        for fd in list(self._sources):
            while self._read(fd):
                pass
            if fd in self._sources:
                self._forget(fd)
        self._output.close(timeout)


def log_through(stream: Any) -> None:
    """The supervisor's own log handlers write to ``stream`` (the relay while it runs, never blocking)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(stream)

"""Open-loop load at a constant rate, wrk2-style: requests leave on a fixed schedule, whatever the answers do.

A closed-loop generator (wrk, ``loadgen.PyLoad``) sends the next request when the last answer
arrives, so a slow server is sent less and its stalls hide. This one schedules request *i* at
``start + i / rate`` and sends it on the first idle keep-alive connection, opening another (up to
``max_connections``) when none is idle; when all are busy the request waits in a queue. Its
latency is counted from the time it was *scheduled*: a stall, of the server or of this generator,
shows as the latency of every request it held back (coordinated omission corrected, as wrk2 does).
The time from the write to the answer is kept too (``service``), so the two can be told apart.

Debian's wrk (4.1) has no ``-R`` (constant rate is wrk2's addition, which Debian does not
package), so the soak scenario drives this one; it measures capacity with ``loadgen.PyLoad``,
the same Python client in closed loop, so "70% of capacity" is 70% of what this client and the
server together reach on this machine.

Figures are cut into intervals (``interval`` seconds): requests scheduled, 2xx answers, errors
(non-2xx answers, connect errors, connections lost mid-request, timeouts) by kind, and latency
histograms with 1% buckets, so percentiles of any span of intervals can be taken afterwards in
constant memory.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kernel_benchmarks.loadgen import Load, _ResponseReader, request_bytes

#: a connection closes itself after a random number of answers in this range (see ``_answered``)
RETIRE_AFTER = (100, 900)
#: and when it has been idle this long (servers close idle keep-alive connections; a request must not race that)
IDLE_CLOSE_S = 2.0
_MIN_S = 1e-5  # the first bucket holds everything up to 10 microseconds
_LOG_STEP = math.log(1.01)


class Histogram:
    """Counts of latencies in buckets 1% wide: percentiles within 1%, memory independent of the count."""

    __slots__ = ("counts", "max", "n")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.n = 0
        self.max = 0.0

    def record(self, seconds: float) -> None:
        i = 0 if seconds <= _MIN_S else int(math.log(seconds / _MIN_S) / _LOG_STEP) + 1
        self.counts[i] = self.counts.get(i, 0) + 1
        self.n += 1
        if seconds > self.max:
            self.max = seconds

    def merge(self, other: Histogram) -> Histogram:
        for i, c in other.counts.items():
            self.counts[i] = self.counts.get(i, 0) + c
        self.n += other.n
        self.max = max(self.max, other.max)
        return self

    def percentile(self, p: float) -> float:
        """Seconds: the upper edge of the bucket holding the p-th percentile (never above the maximum)."""
        if not self.n:
            return 0.0
        rank = max(1, math.ceil(p / 100 * self.n))
        seen = 0
        for i in sorted(self.counts):
            seen += self.counts[i]
            if seen >= rank:
                return min(self.max, _MIN_S * 1.01**i)
        return self.max


@dataclass
class Interval:
    """What happened in one interval of the run."""

    start: float  # seconds from the start of the load
    end: float
    sent: int = 0  # requests whose scheduled time fell in this interval
    ok: int = 0  # 2xx answers received in it
    errors: int = 0  # non-2xx answers, connect errors, connections lost mid-request, timeouts
    kinds: dict[str, int] = field(default_factory=dict)  # errors by kind ("status 503", "timeout", ...)
    latency: Histogram = field(default_factory=Histogram)  # from the scheduled time to the whole answer
    service: Histogram = field(default_factory=Histogram)  # from the write to the whole answer
    queued: int = 0  # scheduled, waiting for a connection, at the end of the interval
    in_flight: int = 0
    connections: int = 0
    lag: float = 0.0  # how late this generator's schedule woke at worst: its own stalls (seconds)

    def error(self, kind: str) -> None:
        self.errors += 1
        self.kinds[kind] = self.kinds.get(kind, 0) + 1

    def absorb(self, later: Interval, end: float) -> None:
        """Take in the figures of the interval after this one, which ends at ``end``."""
        self.end = end
        self.sent += later.sent
        self.ok += later.ok
        self.errors += later.errors
        for k, v in later.kinds.items():
            self.kinds[k] = self.kinds.get(k, 0) + v
        self.latency.merge(later.latency)
        self.service.merge(later.service)
        self.lag = max(self.lag, later.lag)
        self.queued, self.in_flight = later.queued, later.in_flight

    def summary(self) -> dict[str, Any]:
        seconds = max(self.end - self.start, 1e-9)
        ms = 1000.0
        return {
            "t": round(self.end, 3),
            "seconds": round(seconds, 3),
            "sent": self.sent,
            "ok": self.ok,
            "errors": self.errors,
            "error_kinds": dict(self.kinds),
            "rps": round((self.ok + self.errors) / seconds, 1),
            "p50_ms": round(self.latency.percentile(50) * ms, 3),
            "p90_ms": round(self.latency.percentile(90) * ms, 3),
            "p99_ms": round(self.latency.percentile(99) * ms, 3),
            "max_ms": round(self.latency.max * ms, 3),
            "service_p99_ms": round(self.service.percentile(99) * ms, 3),
            "queued": self.queued,
            "in_flight": self.in_flight,
            "connections": self.connections,
            "loadgen_lag_ms": round(self.lag * ms, 3),
        }


class _Conn(_ResponseReader, asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self, drv: OpenLoop) -> None:
        self.drv = drv
        self.transport: asyncio.Transport | None = None
        self._reset_reader()
        self.scheduled: float | None = None  # the request in flight, by its scheduled time
        self.sent = 0.0
        self.answers_left = drv.rng.randint(*RETIRE_AFTER)
        self.idle_since = 0.0
        self.dead = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.drv._opened(self)

    def send(self, scheduled: float) -> None:
        assert self.transport is not None
        self.scheduled = scheduled
        self.head_done = False
        self.sent = time.perf_counter()
        self.transport.write(self.drv.request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.scheduled is not None and self._parse():
            scheduled, self.scheduled = self.scheduled, None
            self.drv._answered(self, scheduled)

    def close(self) -> None:
        self.dead = True  # never picked again, even before the transport reports it closed
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.dead = True
        self.drv._lost(self)


class OpenLoop:
    """``rate`` requests per second of ``load`` for ``duration`` seconds, on a fixed schedule.

    ``on_interval`` is called with each finished interval (in the event loop: keep it short).
    After the last scheduled request the run waits for the answers still due (at most
    ``timeout``); whatever is still unanswered then counts as an error.
    """

    def __init__(
        self,
        load: Load,
        *,
        rate: float,
        duration: float,
        interval: float = 5.0,
        max_connections: int = 32,
        timeout: float = 10.0,
        on_interval: Callable[[Interval], None] | None = None,
    ) -> None:
        if rate <= 0 or duration <= 0 or interval <= 0 or max_connections < 1:
            raise ValueError("rate, duration, interval and max_connections must be positive")
        self.host, self.port, self.request = request_bytes(load)
        self.rate = rate
        self.duration = duration
        self.interval = interval
        self.max_connections = max_connections
        self.timeout = timeout
        self.on_interval = on_interval
        self.intervals: list[Interval] = []
        self.start = 0.0
        self.cur = Interval(0.0, 0.0)
        self.queue: deque[float] = deque()  # scheduled times of requests waiting for a connection
        self.idle: deque[_Conn] = deque()  # first in, first out: every connection stays in use
        self.conns: set[_Conn] = set()
        self.opening = 0
        self.stopping = False
        self.rng = random.Random(12)

    def run(self) -> list[Interval]:
        """Run in a new event loop (uvloop when installed); the intervals, in order."""
        runner: Callable[..., Any] = asyncio.run
        try:
            import uvloop

            runner = uvloop.run
        except ImportError:
            pass
        runner(self._run())
        return self.intervals

    # -- the schedule ----------------------------------------------------------------------------
    async def _run(self) -> None:
        self.start = time.perf_counter()
        self.cur = Interval(0.0, 0.0)
        total = max(1, round(self.rate * self.duration))
        step = 1.0 / self.rate
        n = 0
        next_cut = self.interval
        next_expiry = 0.1
        while n < total:
            now = time.perf_counter() - self.start
            due = min(total, int(now * self.rate) + 1)
            while now >= next_cut:  # requests scheduled before the cut count in the interval it ends
                n = self._schedule(n, min(due, math.ceil(next_cut * self.rate - 1e-9)))
                self._cut(next_cut)  # at its nominal time: late by this loop's lag at most
                next_cut += self.interval
            n = self._schedule(n, due)
            self._dispatch()
            if now >= next_expiry:
                self._expire()
                next_expiry = now + 0.1
            wake = n * step
            wait = wake - (time.perf_counter() - self.start)
            await asyncio.sleep(wait if wait > 0 else 0)
            late = time.perf_counter() - self.start - wake
            if late > self.cur.lag:
                self.cur.lag = late
        deadline = time.perf_counter() + self.timeout + 1.0
        while (self.queue or self._in_flight()) and time.perf_counter() < deadline:
            self._expire()
            await asyncio.sleep(0.005)
        for _ in range(len(self.queue)):
            self.queue.popleft()
            self.cur.error("unanswered")
        self.stopping = True
        for conn in list(self.conns):
            if conn.scheduled is not None:
                conn.scheduled = None
                self.cur.error("unanswered")
            conn.close()
        now = time.perf_counter() - self.start
        if self.intervals and now - self.cur.start < self.interval / 2:
            self.intervals[-1].absorb(self.cur, now)  # the drain's few answers: no interval of their own
        else:
            self._cut(now)
        await asyncio.sleep(0)  # let the transports close

    def _schedule(self, n: int, due: int) -> int:
        """Requests ``n`` .. ``due - 1`` into the queue, counted as sent in the current interval."""
        if due > n:
            step = 1.0 / self.rate
            self.queue.extend(self.start + i * step for i in range(n, due))
            self.cur.sent += due - n
            return due
        return n

    def _cut(self, now: float) -> None:
        done, self.cur = self.cur, Interval(now, now)
        done.end = now
        done.queued = len(self.queue)
        done.in_flight = self._in_flight()
        done.connections = len(self.conns)
        self.intervals.append(done)
        if self.on_interval is not None:
            self.on_interval(done)

    def _in_flight(self) -> int:
        return sum(1 for c in self.conns if c.scheduled is not None)

    # -- connections -----------------------------------------------------------------------------
    def _dispatch(self) -> None:
        while self.queue and self.idle:
            conn = self.idle.popleft()
            if not conn.dead:
                conn.send(self.queue.popleft())
        room = self.max_connections - len(self.conns) - self.opening
        for _ in range(min(len(self.queue) - self.opening, room)):
            self.opening += 1
            asyncio.get_running_loop().create_task(self._open())

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_connection(lambda: _Conn(self), self.host, self.port)
        except OSError:
            self.opening -= 1
            if self.queue and not self.stopping:  # the request that was waiting for it fails
                self.queue.popleft()
                self.cur.error("connect")
            self._dispatch()

    def _opened(self, conn: _Conn) -> None:
        self.opening -= 1
        if self.stopping:
            conn.close()
            return
        conn.idle_since = time.perf_counter()
        self.conns.add(conn)
        self.idle.append(conn)
        self._dispatch()

    def _answered(self, conn: _Conn, scheduled: float) -> None:
        now = time.perf_counter()
        self.cur.latency.record(now - scheduled)
        self.cur.service.record(now - conn.sent)
        if 200 <= conn.status < 300:
            self.cur.ok += 1
        else:
            self.cur.error(f"status {conn.status}")
        conn.answers_left -= 1
        if conn.server_closes or conn.answers_left <= 0:
            # The server's own limit (hypercorn: 1000 requests on a connection) would close every
            # connection of the pool at about the same moment, since the pool is used in turn: each
            # retires itself, idle, after a random number of answers instead. Neither is an error.
            conn.close()
        elif not self.stopping:
            conn.idle_since = now
            self.idle.append(conn)
            self._dispatch()

    def _lost(self, conn: _Conn) -> None:
        self.conns.discard(conn)
        if conn.scheduled is not None and not self.stopping:
            conn.scheduled = None
            self.cur.error("connection lost")
        if not self.stopping:
            self._dispatch()

    def _expire(self) -> None:
        """Requests in flight longer than ``timeout`` fail, and their connections are closed; idle ones retire."""
        now = time.perf_counter()
        for conn in list(self.conns):
            if conn.scheduled is not None and now - conn.sent > self.timeout:
                conn.scheduled = None
                self.cur.error("timeout")
                conn.close()
            elif conn.scheduled is None and conn.idle_since and now - conn.idle_since > IDLE_CLOSE_S:
                conn.close()


def merged(intervals: list[Interval]) -> tuple[Histogram, Histogram]:
    """One latency and one service histogram for a span of intervals."""
    lat, svc = Histogram(), Histogram()
    for i in intervals:
        lat.merge(i.latency)
        svc.merge(i.service)
    return lat, svc

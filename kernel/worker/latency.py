"""A worker's handler times for the operator: median and 99th percentile over the last few seconds.

Each heartbeat closes an interval; the percentiles cover the last ``INTERVALS`` of them, so a
worker that just went idle still shows what its last requests took. Each interval keeps at most
``PER_INTERVAL`` samples, chosen uniformly among its requests (reservoir sampling): a busy worker
pays one addition per request and a bounded sort per heartbeat.
"""

from __future__ import annotations

import random
from collections import deque

INTERVALS = 10
PER_INTERVAL = 2000


class LatencyWindow:
    def __init__(self) -> None:
        self._current: list[float] = []
        self._seen = 0
        self._closed: deque[list[float]] = deque(maxlen=INTERVALS)

    def add(self, seconds: float) -> None:
        self._seen += 1
        if len(self._current) < PER_INTERVAL:
            self._current.append(seconds)
        else:
            slot = random.randrange(self._seen)
            if slot < PER_INTERVAL:
                self._current[slot] = seconds

    def percentiles(self) -> tuple[float, float]:
        """Close the interval; median and 99th percentile (ms) of the last intervals (0, 0: no request)."""
        self._closed.append(self._current)
        self._current, self._seen = [], 0
        samples = sorted(s for interval in self._closed for s in interval)
        if not samples:
            return 0.0, 0.0
        n = len(samples)
        return samples[n // 2] * 1000, samples[min(n - 1, n * 99 // 100)] * 1000

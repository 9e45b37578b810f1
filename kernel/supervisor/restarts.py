"""When to restart a dead process, and when to stop trying: exponential backoff and a flapping limit."""

from __future__ import annotations

import time
from collections import deque


class RestartPolicy:
    """Deaths of one plugin (or of the gateways) within a window, and the backoff before the next start.

    More than ``limit`` deaths within ``window`` seconds is flapping: stop restarting.
    """

    def __init__(self, limit: int, window: float, initial_delay: float, max_delay: float) -> None:
        self.limit = limit
        self.window = window
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self.deaths: deque[float] = deque()
        self.backoff = 0.0

    def died(self) -> bool:
        """Record a death; true when it makes the process flapping."""
        now = time.monotonic()
        self.deaths.append(now)
        while self.deaths and now - self.deaths[0] > self.window:
            self.deaths.popleft()
        return len(self.deaths) > self.limit

    def next_delay(self) -> float:
        """Seconds to wait before the next start: doubling from the initial delay up to the maximum."""
        self.backoff = min(self.max_delay, self.backoff * 2 if self.backoff else self.initial_delay)
        return self.backoff

    def started(self) -> None:
        """A start succeeded (the process became ready): the next failure backs off from the start."""
        self.backoff = 0.0

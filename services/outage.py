"""A backing service (database, Redis) that went away: one log line when it goes, one when it is back.

A service that calls its backend on every request would otherwise log every failed call: an
outage of a minute under load is thousands of identical lines (tracebacks, often) that bury the
one that matters. ``Outage`` keeps the state instead: ``failed`` logs the first failure of an
outage (a warning naming what and why), ``ok`` logs the first success after it (how long it
lasted); calls in between log nothing. ``reason`` is the short cause shown to clients: the
error's kind without addresses or credentials (those go to the log only).
"""

from __future__ import annotations

import os
import time

from kernel.api import Logger

__all__ = ["Outage", "reason"]


def reason(exc: BaseException) -> str:
    """A short cause for a client: ``connection refused``, ``timed out``; never the address."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.errno:  # the errno's text: asyncio's also names the address
        return os.strerror(exc.errno).lower()
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


class Outage:
    """The up/down state of one backend, logged at each change (not at each call)."""

    def __init__(self, logger: Logger, what: str) -> None:
        self._logger = logger
        self.what = what
        self.down = False
        self._since = 0.0

    def failed(self, exc: BaseException, consequence: str, problem: str = "is unavailable") -> None:
        """A call failed because the backend cannot be used; logs the first failure of an outage."""
        if self.down:
            return
        self.down, self._since = True, time.monotonic()
        self._logger.warning(f"{self.what} {problem} ({type(exc).__name__}: {exc}); {consequence}")

    def ok(self) -> None:
        """A call succeeded; logs the end of an outage."""
        if self.down:
            self.down = False
            self._logger.info(f"{self.what} is back after {time.monotonic() - self._since:.1f}s")

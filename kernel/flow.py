"""Credit-based flow control for body chunks, the same at both ends of a stream.

The sender of a body holds a ``CreditWindow`` of ``protocol.WINDOW`` chunks;
the receiver counts what it consumed with an ``Acker`` and sends ``Credit``
back every ``protocol.ACK_EVERY`` chunks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from kernel.protocol import ACK_EVERY, WINDOW


class CreditWindow:
    """Body chunks a sender may still put on the wire before the receiver grants more."""

    __slots__ = ("_waiter", "available")

    def __init__(self) -> None:
        self.available = WINDOW
        self._waiter: asyncio.Future[None] | None = None

    def grant(self, chunks: int) -> bool:
        """Add credit; true if a sender was waiting for it (and is now woken)."""
        self.available += chunks
        return self.wake()

    def wake(self) -> bool:
        """Wake a waiting sender (to see credit, or that the stream stopped)."""
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)
            return True
        return False

    def try_acquire(self) -> bool:
        """Spend one chunk of credit if there is any, without waiting."""
        if self.available > 0:
            self.available -= 1
            return True
        return False

    async def acquire(self, stopped: Callable[[], BaseException | None]) -> None:
        """Spend one chunk of credit, waiting for it; raises what ``stopped()`` returns once set."""
        while self.available <= 0:
            exc = stopped()
            if exc is not None:
                raise exc
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
            self._waiter = None
        self.available -= 1


class Acker:
    """The receiver's count of consumed chunks, turned into credit to send back."""

    __slots__ = ("_consumed",)

    def __init__(self) -> None:
        self._consumed = 0

    def consumed(self, more: bool) -> int:
        """Count one consumed chunk; the credit to send back now (0: not yet, or nothing follows)."""
        self._consumed += 1
        if not more or self._consumed < ACK_EVERY:
            return 0
        chunks, self._consumed = self._consumed, 0
        return chunks

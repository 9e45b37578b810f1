"""Flow control shared by gateway and worker: a sender waits for credit, a receiver grants it in batches."""

from __future__ import annotations

import asyncio

import pytest

from kernel.flow import Acker, CreditWindow
from kernel.protocol import ACK_EVERY, WINDOW


async def test_a_sender_waits_for_credit_and_stops_when_told() -> None:
    window = CreditWindow()
    for _ in range(WINDOW):
        await window.acquire(lambda: None)
    assert not window.try_acquire()
    waiting = asyncio.ensure_future(window.acquire(lambda: None))
    await asyncio.sleep(0)
    assert not waiting.done()
    assert window.grant(1) is True  # it woke the waiting sender
    await waiting
    assert window.available == 0
    failure = RuntimeError("stream failed")
    stopping = asyncio.ensure_future(window.acquire(lambda: failure))
    with pytest.raises(RuntimeError, match="stream failed"):
        await stopping
    assert window.grant(2) is False and window.try_acquire() and window.available == 1


def test_a_receiver_returns_credit_every_ack_every_chunks_but_not_after_the_last() -> None:
    acker = Acker()
    credits = [acker.consumed(more=True) for _ in range(2 * ACK_EVERY)]
    assert credits == ([0] * (ACK_EVERY - 1) + [ACK_EVERY]) * 2
    assert acker.consumed(more=False) == 0

"""What the supervisor's parts see of it: its news of the children, and a narrow view of itself.

The supervisor hands ``Changes`` and itself as a ``ReplaceHost`` or ``RolloutHost`` to the parts
that wait for its children (``replace``, ``rollout``); they import this module, never the
supervisor. ``Changes`` wakes them when something they may wait for happened: a child became ready
or exited, a gateway applied a worker table, the kernel began to stop. A waiter checks its own
condition again on each wake-up, so a notification too many costs a look and nothing else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Protocol

from kernel.protocol import Message
from kernel.supervisor.children import Child
from kernel.supervisor.table import PluginRecord


class Changes:
    """Wakes every waiter on each ``notify()``; ``wait_for`` returns once its condition holds."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        """Something changed: every current waiter looks again."""
        self._event.set()
        self._event = asyncio.Event()  # later waiters wait for the next change

    async def wait_for(self, condition: Callable[[], bool], timeout: float | None = None) -> bool:
        """Wait until ``condition()`` is true (checked now and after each change); false after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not condition():
            event = self._event
            if deadline is None:
                await event.wait()
                continue
            left = deadline - loop.time()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(event.wait(), left)
            except TimeoutError:
                return condition()
        return True


class ReplaceHost(Protocol):
    """What replacing workers needs of the supervisor, and nothing more."""

    @property
    def stopping(self) -> bool: ...

    @property
    def plugins(self) -> Mapping[str, PluginRecord]: ...

    @property
    def children(self) -> Mapping[str, Child]:
        """Every live child by its identity: one that exited is no longer in it."""
        ...

    def start_worker(self, plugin: PluginRecord, slot: int, *, replacing: bool = False) -> Child: ...

    def publish(self) -> int:
        """Send the gateways a new worker table; its generation."""
        ...

    def send(self, child: Child, msg: Message) -> bool: ...

    def recycled(self, plugin_id: str) -> None:
        """Count one worker of ``plugin_id`` replaced (the operator's figures)."""
        ...


class RolloutHost(ReplaceHost, Protocol):
    """What an operator's rollout (``rollout``) needs of the supervisor besides replacing workers."""

    def start_gateway(self, index: int) -> Child:
        """Start gateway ``index`` on the shared listener (the one it replaces has exited)."""
        ...

    def to_gateways(self, msg: Message) -> None:
        """Send ``msg`` to every ready gateway."""
        ...

    async def reload_config(self) -> tuple[str, bool]:
        """Read the config files again: why they do not load (``""``: they do), and whether it changed."""
        ...

"""The rollouts as the supervisor last told this gateway, and the way an operator's request reaches it.

The supervisor runs rollouts (``kernel.supervisor.rollout``) and sends every gateway the latest of
them on each change (``Rollouts``): any gateway can say where a rollout stands, whichever gateway
took the request. ``request`` forwards one through this gateway's control link and waits until the
supervisor has taken it (running, or refused).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable

from kernel.errors import ServiceUnavailableError
from kernel.protocol import Message, RolloutRequest, Rollouts, RolloutState

#: seconds the supervisor may take to take a rollout request
ANSWER_TIMEOUT = 5.0


class RolloutBoard:
    """This gateway's copy of the supervisor's rollouts (``update``), and its way to ask for one."""

    def __init__(self) -> None:
        self.states: dict[str, RolloutState] = {}
        self._send: Callable[[Message], bool] | None = None
        self._changed = asyncio.Event()

    def connect(self, send: Callable[[Message], bool]) -> None:
        """Requests go to the supervisor through ``send`` (the gateway's control link)."""
        self._send = send

    def update(self, msg: Rollouts) -> None:
        self.states = {s.id: s for s in msg.rollouts}
        self._changed.set()
        self._changed = asyncio.Event()

    def latest(self) -> list[RolloutState]:
        """Every rollout the supervisor keeps, newest first."""
        return sorted(self.states.values(), key=lambda s: s.requested_at, reverse=True)

    async def request(self, plugins: list[str] | None, gateways: bool, by: str) -> RolloutState:
        """Ask the supervisor for a rollout (``plugins`` ``None``: every plugin); its first state (``running``
        or ``refused``)."""
        rollout_id = f"r-{secrets.token_hex(6)}"
        msg = RolloutRequest(rollout_id, plugins or [], gateways, plugins is None and not gateways, by)
        if self._send is None or not self._send(msg):
            raise ServiceUnavailableError("The supervisor cannot take a rollout now (is this a kernel serve?)")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ANSWER_TIMEOUT
        while rollout_id not in self.states:
            left = deadline - loop.time()
            if left <= 0:
                raise ServiceUnavailableError(f"The supervisor did not answer rollout {rollout_id} in time")
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                pass
        return self.states[rollout_id]

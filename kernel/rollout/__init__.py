"""Rollouts for operators: ``/.kernel/rollout/v1/rollouts`` at the gateway's root, and ``kernel rollout``.

``POST`` asks for one: a plugin's workers replaced with no failed request (after a new version of its
package was installed, or its config changed), every plugin's in turn, or the gateway processes
restarted one at a time. ``GET`` follows it. Operators only (``backend.dashboard.operators``), as the
dashboard's snapshot. The supervisor runs it (``kernel.supervisor.rollout``); every gateway knows where
each stands (``kernel.gateway.rollouts``), so whichever gateway answers can say.

A built-in hook provider: the routes come through ``kernel_root_routes``, as an installed package's
would. Importing it costs nothing: the routes' module is imported by the hook.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from kernel.core_services import RootConfig
from kernel.hookspecs import hookimpl
from kernel.hooktypes import GatewayView
from kernel.rollout.paths import ROLLOUTS

if TYPE_CHECKING:
    from starlette.routing import BaseRoute


__all__ = ["ROLLOUTS", "kernel_root_routes"]


@hookimpl
def kernel_root_routes(gateway: GatewayView, config: RootConfig) -> Sequence[BaseRoute]:
    from kernel.rollout.routes import rollout_routes

    return rollout_routes(gateway, config)

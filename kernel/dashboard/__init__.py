"""The live dashboard: ``/.kernel/dashboard`` at the gateway's root, for operators (``backend.dashboard``).

Every plugin with its workers (pid, state, memory, CPU, load, latency, restarts), failed plugins and
why, the gateways and the supervisor, each plugin's scheduled tasks with a trigger button, and the
gateway's recent server errors, updated every second without reloading the page. Plain HTML, CSS
and JavaScript shipped in this package (``static/``): no build step, nothing from a CDN.

``routes`` serves the page and its snapshot (JSON, operators only), ``snapshot`` builds the latter;
``kernel status`` (``kernel.cli.status``) prints the same snapshot in a terminal.

A built-in hook provider: the routes come through ``kernel_root_routes``, as an installed
package's would. Importing it costs nothing: the routes' module is imported by the hook.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from kernel.core_services import RootConfig
from kernel.dashboard.paths import PAGE, SNAPSHOT
from kernel.hookspecs import hookimpl
from kernel.hooktypes import GatewayView

if TYPE_CHECKING:
    from starlette.routing import BaseRoute


__all__ = ["PAGE", "SNAPSHOT", "kernel_root_routes"]


@hookimpl
def kernel_root_routes(gateway: GatewayView, config: RootConfig) -> Sequence[BaseRoute]:
    from kernel.dashboard.routes import dashboard_routes

    return dashboard_routes(gateway, config)

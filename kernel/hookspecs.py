"""The contract between the kernel and installed packages.

A package listed under the ``kernel.plugins`` entry point group may implement
any of these hooks (with ``kernel.api.hookimpl``). Backend plugins themselves
are ``BackendPlugin`` objects; these hooks are how packages provide services
and add routes to plugins.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from kernel.core_services import HttpRouter
    from kernel.service import ServiceFactory

PROJECT = "kernel"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def kernel_provide_services() -> Sequence[ServiceFactory]:
    """Provide service implementations; a package loaded later overrides one loaded earlier."""
    raise NotImplementedError


@hookspec
def kernel_register_routes(plugin_id: str, router: HttpRouter) -> None:
    """Add routes or auth policies to the router of plugin ``plugin_id``, in its worker."""

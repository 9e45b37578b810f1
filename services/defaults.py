"""The built-in service providers, registered through the same hooks as any installed package.

Each module listed in ``MODULES`` exposes ``FACTORIES``, a list of ``ServiceFactory``.
``kernel config check`` validates the config keys the services declare in ``kernel_config_schemas``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

from kernel.api import ServiceFactory, hookimpl
from services.cache import CacheSettings
from services.discovery import DiscoveryEndpoint

MODULES = (
    "services.logger",
    "services.lifecycle",
    "services.cache",
    "services.database",
    "services.discovery",
    "services.scheduler",
    "services.health",
)


@hookimpl
def kernel_provide_services() -> Sequence[ServiceFactory]:
    factories: list[ServiceFactory] = []
    for name in MODULES:
        factories.extend(importlib.import_module(name).FACTORIES)
    return factories


@hookimpl
def kernel_config_schemas() -> Mapping[str, Any]:
    """``backend.cache`` and ``discovery.endpoints``; ``backend.database`` is checked when a plugin opens it."""
    return {"backend.cache": CacheSettings, "discovery.endpoints": list[DiscoveryEndpoint]}

"""The built-in service providers, registered through the same hook as any installed package.

Each module listed in ``MODULES`` exposes ``FACTORIES``, a list of ``ServiceFactory``.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from kernel.hookspecs import hookimpl
from kernel.service import ServiceFactory

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

"""Hook provider of the package: ``kernel config check`` requires both upstream URLs once ``frobsAggregator`` exists.

Imported by every worker and gateway (like any provider), so it imports only the config module.
"""

from __future__ import annotations

from collections.abc import Mapping

from kernel.api import hookimpl

from .config import CONFIG_KEY, FrobsAggregatorBlock


@hookimpl
def kernel_config_schemas() -> Mapping[str, type]:
    return {CONFIG_KEY: FrobsAggregatorBlock}

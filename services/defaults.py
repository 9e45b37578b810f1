"""The built-in service providers, registered through the same hook as any installed package."""

from __future__ import annotations

from collections.abc import Sequence

from kernel.core_services import Logger, PluginMetadata, core_services
from kernel.hookspecs import hookimpl
from kernel.service import ServiceFactory, create_service_factory
from services.lifecycle import LifecycleHooks
from services.logger import PluginLogger, plugin_logger
import logging


@create_service_factory(core_services.root_logger)
def _root_logger() -> Logger:
    return PluginLogger(logging.getLogger("kernel"), {"plugin": "root"})


@create_service_factory(core_services.logger, {"meta": core_services.plugin_metadata})
def _logger(meta: PluginMetadata) -> Logger:
    return plugin_logger(meta.plugin_id)


@create_service_factory(core_services.root_lifecycle, {"logger": core_services.root_logger})
def _root_lifecycle(logger: Logger) -> LifecycleHooks:
    return LifecycleHooks(logger, "root")


@create_service_factory(
    core_services.lifecycle,
    {"logger": core_services.logger, "meta": core_services.plugin_metadata},
)
def _lifecycle(logger: Logger, meta: PluginMetadata) -> LifecycleHooks:
    return LifecycleHooks(logger, f"plugin '{meta.plugin_id}'")


@hookimpl
def kernel_provide_services() -> Sequence[ServiceFactory]:
    return [_root_logger, _logger, _root_lifecycle, _lifecycle]

"""The ``core.rootLogger`` and ``core.logger`` services: stdlib logging bound to a plugin, with structured fields.

``info("msg", key=value)`` logs to the stdlib logger ``kernel.plugin.<pluginId>`` with the fields
attached; ``child(**fields)`` binds more. Formatting, levels, redaction of secrets and crash
handlers belong to the process, not to this service: the kernel sets them up at process start
(``kernel.logs``), so a package that replaces ``core.logger`` keeps them.
"""

from __future__ import annotations

import logging
from typing import Any

from kernel.api import PLUGIN_LOGGER_PREFIX, Logger, PluginMetadata, RootConfig, core_services, create_service_factory

__all__ = ["FACTORIES", "PluginLogger", "plugin_logger"]


class PluginLogger:
    """A ``kernel.api.Logger``: ``info("msg", key=value)``; ``child(**fields)`` binds more fields."""

    def __init__(self, logger: logging.Logger, fields: dict[str, Any]) -> None:
        self._logger = logger
        self._fields = fields

    def _log(self, level: int, msg: str, fields: dict[str, Any], exc_info: bool = False) -> None:
        if self._logger.isEnabledFor(level):
            extra = {"fields": {**self._fields, **fields}}
            self._logger.log(level, msg, extra=extra, exc_info=exc_info, stacklevel=3)

    def debug(self, msg: str, **fields: Any) -> None:
        self._log(logging.DEBUG, msg, fields)

    def info(self, msg: str, **fields: Any) -> None:
        self._log(logging.INFO, msg, fields)

    def warning(self, msg: str, **fields: Any) -> None:
        self._log(logging.WARNING, msg, fields)

    def error(self, msg: str, **fields: Any) -> None:
        self._log(logging.ERROR, msg, fields)

    def exception(self, msg: str, **fields: Any) -> None:
        self._log(logging.ERROR, msg, fields, exc_info=True)

    def child(self, **fields: Any) -> PluginLogger:
        return PluginLogger(self._logger, {**self._fields, **fields})


def plugin_logger(plugin_id: str) -> PluginLogger:
    return PluginLogger(logging.getLogger(PLUGIN_LOGGER_PREFIX + plugin_id), {"plugin": plugin_id})


@create_service_factory(core_services.root_logger, {"config": core_services.root_config})
def _root_logger(config: RootConfig) -> Logger:
    """The kernel's own logger. Like Backstage's, it depends on the root config (a replacement may read
    it); levels, format and secret redaction were applied from that config at process start."""
    return PluginLogger(logging.getLogger("kernel"), {"plugin": "root"})


@create_service_factory(
    core_services.logger, {"meta": core_services.plugin_metadata, "root": core_services.root_logger}
)
def _logger(meta: PluginMetadata, root: Logger) -> Logger:
    return plugin_logger(meta.plugin_id)


FACTORIES = [_root_logger, _logger]

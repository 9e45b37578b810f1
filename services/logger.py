"""The logger service: stdlib logging bound to a plugin, with structured fields."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

from kernel.core_services import Logger, PluginMetadata, core_services
from kernel.service import create_service_factory

_RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


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


class TextFormatter(logging.Formatter):
    """``time level [plugin pid] message key=value`` for development."""

    def format(self, record: logging.LogRecord) -> str:
        fields = dict(getattr(record, "fields", {}))
        plugin = fields.pop("plugin", record.name)
        when = time.strftime("%H:%M:%S", time.localtime(record.created))
        extra = " ".join(f"{k}={v}" for k, v in fields.items())
        line = f"{when} {record.levelname:<7} [{plugin} {record.process}] {record.getMessage()}"
        if extra:
            line += " " + extra
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line for production."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": record.created,
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        out.update(getattr(record, "fields", {}))
        if record.exc_info:
            out["stack"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure(level: str = "info", fmt: str | None = None) -> None:
    """Set up the process's logging once: text in development, JSON lines in production."""
    if fmt is None:
        fmt = "text" if os.environ.get("KERNEL_ENV", "development") == "development" else "json"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def plugin_logger(plugin_id: str) -> PluginLogger:
    return PluginLogger(logging.getLogger(f"kernel.plugin.{plugin_id}"), {"plugin": plugin_id})


@create_service_factory(core_services.root_logger)
def _root_logger() -> Logger:
    return PluginLogger(logging.getLogger("kernel"), {"plugin": "root"})


@create_service_factory(core_services.logger, {"meta": core_services.plugin_metadata})
def _logger(meta: PluginMetadata) -> Logger:
    return plugin_logger(meta.plugin_id)


FACTORIES = [_root_logger, _logger]

"""Helpers for the logging suites (``tests/test_logs.py``, ``tests/services/test_logger.py``)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from kernel import logs
from kernel_services.logger import PluginLogger


@contextmanager
def restored_logging() -> Iterator[None]:
    """Give the process's logging back as it was: handlers, levels, redactor, remembered schemas."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name in list(logging.Logger.manager.loggerDict):
            if name.startswith(logs.PLUGIN_LOGGER_PREFIX):
                logging.getLogger(name).setLevel(logging.NOTSET)
        logs.REDACTOR.set_values(())
        logs._schemas.clear()
        if logs._unsubscribe is not None:
            logs._unsubscribe()
            logs._unsubscribe = None


def capture(formatter: logging.Formatter, logger_name: str = "kernel.plugin.demo") -> tuple[io.StringIO, PluginLogger]:
    """Route the root logger to a string through ``formatter``; a plugin logger of plugin ``demo``."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG)
    return stream, PluginLogger(logging.getLogger(logger_name), {"plugin": "demo"})

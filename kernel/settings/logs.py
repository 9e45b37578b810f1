"""``backend.logging``: the log level (of the kernel and of each plugin), the log format, and each plugin's log rate.

``read_logging_settings`` reads and validates it, a mistake is a ``ConfigError`` naming the key;
what it drives is in ``kernel.logs``.

A contract module: it imports msgspec, the standard library, ``kernel.errors`` and ``kernel.settings.base``.
"""

from __future__ import annotations

from typing import Final

import msgspec

from kernel.errors import ConfigError
from kernel.settings.base import HasGetOptional, SettingsStruct, read_section

__all__ = [
    "LOG_LEVELS",
    "PLUGIN_LOGGER_PREFIX",
    "LogRate",
    "LoggingSettings",
    "PluginLogging",
    "read_logging_settings",
]


#: the level names ``backend.logging`` accepts, in the order error messages list them
LOG_LEVELS: Final = ("debug", "info", "warn", "warning", "error", "critical")
#: a plugin's stdlib logger is ``PLUGIN_LOGGER_PREFIX + <pluginId>``; ``backend.logging.plugins.<id>`` sets its level
PLUGIN_LOGGER_PREFIX: Final = "kernel.plugin."


class LogRate(SettingsStruct, frozen=True):
    #: lines a second each plugin may write to the kernel's output, on average (0: no limit)
    lines_per_second: float = 1000
    #: lines it may write at once, above the average, before lines are dropped
    burst: int = 5000


class PluginLogging(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    #: the level of this plugin's logger
    level: str | None = None
    #: this plugin's log rate, instead of `backend.logging.rate`
    rate: LogRate | None = None


class LoggingSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """``backend.logging``: ``level`` (else ``KERNEL_LOG_LEVEL``, else info), ``format`` (text|json)."""

    #: debug, info, warn, error or critical (unset: `KERNEL_LOG_LEVEL`, else info)
    level: str | None = None
    #: `text` or `json` (unset: json when `KERNEL_ENV=production`, else text)
    format: str | None = None
    #: the log rate of each plugin's workers (lines past it are dropped, counted and summarized)
    rate: LogRate = LogRate()
    plugins: dict[str, PluginLogging] = {}

    def rate_of(self, plugin_id: str) -> LogRate:
        """``plugin_id``'s own log rate if it has one, else ``rate``."""
        own = self.plugins.get(plugin_id)
        return own.rate if own is not None and own.rate is not None else self.rate


def _check_level(key: str, level: str | None) -> None:
    if level is not None and level.lower() not in LOG_LEVELS:
        raise ConfigError(f"Invalid config: {key} must be one of {', '.join(LOG_LEVELS)}, got '{level}'")


def read_logging_settings(config: HasGetOptional) -> LoggingSettings:
    """``backend.logging``, validated; a mistake is a ``ConfigError`` naming the key."""
    s = read_section(config, "backend.logging", LoggingSettings)
    _check_level("backend.logging.level", s.level)
    for pid, own in s.plugins.items():
        _check_level(f"backend.logging.plugins.{pid}.level", own.level)
    for key, rate in [("rate", s.rate), *((f"plugins.{p}.rate", o.rate) for p, o in s.plugins.items())]:
        if rate is not None and (rate.lines_per_second < 0 or rate.burst < 1):
            raise ConfigError(
                f"Invalid config: backend.logging.{key} needs linesPerSecond >= 0 and burst >= 1, "
                f"got {rate.lines_per_second:g} and {rate.burst}"
            )
    if s.format is not None and s.format not in ("text", "json"):
        raise ConfigError(f"Invalid config: backend.logging.format must be text or json, got '{s.format}'")
    return s

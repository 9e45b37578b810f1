"""``backend.config.reload``: whether, and how often, the config files are read again at run time.

``read_reload_settings`` reads and validates it, a mistake is a ``ConfigError`` naming the key;
what it drives is in ``kernel.config.reloading``.

A contract module: it imports msgspec, the standard library, ``kernel.errors`` and ``kernel.settings.base``.
"""

from __future__ import annotations

import math

import msgspec

from kernel.errors import ConfigError
from kernel.settings.base import HasGetOptional, read_section

__all__ = ["ReloadSettings", "read_reload_settings"]


class ReloadSettings(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    """``backend.config.reload``."""

    #: reload the config files when they change and push a valid new config to every process
    enabled: bool = False
    watch_files: bool = True  # poll the config files' mtimes every pollSeconds
    #: seconds between looks at the config files; a change is read once it has held still for one look
    poll_seconds: float = 1.0
    interval_seconds: float | None = None  # also reload unconditionally this often


def read_reload_settings(config: HasGetOptional) -> ReloadSettings:
    """``backend.config.reload``, validated; a mistake is a ``ConfigError`` naming the key."""
    settings = read_section(config, "backend.config.reload", ReloadSettings)
    for name, v in (("pollSeconds", settings.poll_seconds), ("intervalSeconds", settings.interval_seconds)):
        if v is not None and not (v > 0 and math.isfinite(v)):
            raise ConfigError(f"Invalid config: backend.config.reload.{name} must be a positive number")
    return settings

"""``backend.lifecycle``: how the kernel leaves when it is told to stop (SIGTERM, as Kubernetes does).

``serverShutdownDelay`` is the reference system's key, with its duration forms (``"5s"``,
``"PT5S"``, ``{seconds: 5}``; a bare number is milliseconds). During the delay readiness answers
503 while every request is still served, so that load balancers and Kubernetes' endpoints stop
sending traffic before anything is refused; then the kernel drains (``backend.workers.shutdownGrace``)
and exits. What it drives is in ``kernel.supervisor.supervisor`` (``Supervisor._on_signal``).

A contract module: it imports msgspec, the standard library, ``kernel.errors`` and the settings modules.
"""

from __future__ import annotations

from typing import Any

from kernel.errors import ConfigError
from kernel.settings.base import HasGetOptional, SettingsStruct, convert
from kernel.settings.ratelimit import parse_duration

__all__ = ["LifecycleSettings", "read_lifecycle_settings"]


class LifecycleSettings(SettingsStruct, frozen=True):
    """``backend.lifecycle``: on SIGTERM, readiness turns 503 at once; requests are served
    ``serverShutdownDelay`` more, then the kernel drains and exits 0."""

    #: seconds readiness is 503 while requests are still served, before draining (`"5s"`, `"PT5S"` in the config)
    server_shutdown_delay: float = 0.0


def read_lifecycle_settings(config: HasGetOptional) -> LifecycleSettings:
    """``backend.lifecycle``, validated; a mistake is a ``ConfigError`` naming the key."""
    key = "backend.lifecycle"
    raw: Any = config.get_optional(key)
    if raw is None:
        return LifecycleSettings()
    if not isinstance(raw, dict):
        raise ConfigError(f"Invalid config: {key} must be an object")
    raw = dict(raw)
    if "serverShutdownDelay" in raw:
        raw["serverShutdownDelay"] = parse_duration(raw["serverShutdownDelay"], f"{key}.serverShutdownDelay")
    settings: LifecycleSettings = convert(raw, key, LifecycleSettings)
    if settings.server_shutdown_delay < 0:
        raise ConfigError(f"Invalid config: {key}.serverShutdownDelay must not be negative")
    return settings

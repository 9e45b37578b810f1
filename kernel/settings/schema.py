"""``Settings``: every setting of the kernel, one section a field; ``read_settings`` reads and checks them all.

Each section is a module of ``kernel.settings`` (see its doc); here are the root, the questions
asked of it per plugin (replicas, limits, boot policy) and the checks that span a section's keys.

A contract module: it imports msgspec, ``kernel.errors`` and the section modules of ``kernel.settings``.
"""

from __future__ import annotations

import msgspec

from kernel.errors import ConfigError
from kernel.settings.auth import AuthSettings, read_auth_settings
from kernel.settings.base import ConfigReader, read_section
from kernel.settings.edge import EdgeSettings, read_edge_settings
from kernel.settings.gateway import GatewaySettings
from kernel.settings.lifecycle import LifecycleSettings, read_lifecycle_settings
from kernel.settings.listen import Listen
from kernel.settings.logs import LoggingSettings, read_logging_settings
from kernel.settings.metrics import MetricsSettings
from kernel.settings.reload import ReloadSettings, read_reload_settings
from kernel.settings.startup import Startup
from kernel.settings.tracing import TracingSettings, read_tracing_settings
from kernel.settings.workers import PluginLimits, WorkerLimits, WorkerSettings, split_address

__all__ = ["Settings", "read_settings"]


class Settings(msgspec.Struct, frozen=True):
    """Every setting of the kernel; the defaults here are the only ones."""

    listen: Listen = Listen()
    base_url: str | None = None  # backend.baseUrl: how the outside world reaches the gateway
    gateway: GatewaySettings = GatewaySettings()
    workers: WorkerSettings = WorkerSettings()
    startup: Startup = Startup()
    logging: LoggingSettings = LoggingSettings()
    reload: ReloadSettings = ReloadSettings()
    auth: AuthSettings = AuthSettings()
    edge: EdgeSettings = EdgeSettings()  # backend.cors, backend.csp, backend.rateLimit, backend.https, ...
    metrics: MetricsSettings = MetricsSettings()
    tracing: TracingSettings = TracingSettings()  # backend.tracing (kernel.settings.tracing)
    lifecycle: LifecycleSettings = LifecycleSettings()  # backend.lifecycle: leaving on SIGTERM

    def replicas(self, plugin_id: str) -> int:
        own = self.workers.plugins.get(plugin_id)
        return own.replicas if own is not None and own.replicas is not None else self.workers.replicas

    def limits(self, plugin_id: str) -> WorkerLimits:
        """The limits of ``plugin_id``'s workers: its own overrides on the defaults."""
        own = self.workers.plugins.get(plugin_id)
        if own is None:
            return self.workers.limits
        changed = {k: v for k in PluginLimits.__struct_fields__ if (v := getattr(own.limits, k)) is not None}
        return msgspec.structs.replace(self.workers.limits, **changed) if changed else self.workers.limits

    def lowest_in_flight_limit(self) -> int:
        """The smallest ``maxInFlight`` of any plugin (0: none is limited)."""
        found = [self.workers.limits.max_in_flight]
        found += [p.limits.max_in_flight for p in self.workers.plugins.values() if p.limits.max_in_flight is not None]
        return min((v for v in found if v), default=0)

    def boot_policy(self, plugin_id: str) -> str:
        own = self.startup.plugins.get(plugin_id)
        return (own and own.on_plugin_boot_failure) or self.startup.default.on_plugin_boot_failure

    def module_boot_policy(self, plugin_id: str, module_id: str) -> str:
        """``abort``: a failing module fails its plugin (whose own policy then applies); ``continue``: skipped."""
        own = self.startup.plugins.get(plugin_id)
        module = own.modules.get(module_id) if own else None
        return (module and module.on_plugin_module_boot_failure) or self.startup.default.on_plugin_module_boot_failure


def read_settings(config: ConfigReader) -> Settings:
    """Every kernel setting (see the module doc), validated; a mistake is a ``ConfigError`` naming the key."""
    settings = Settings(
        listen=read_section(config, "backend.listen", Listen),
        base_url=config.get_optional_string("backend.baseUrl"),
        gateway=read_section(config, "backend.gateway", GatewaySettings),
        workers=read_section(config, "backend.workers", WorkerSettings),
        startup=read_section(config, "backend.startup", Startup),
        logging=read_logging_settings(config),
        reload=read_reload_settings(config),
        auth=read_auth_settings(config),
        edge=read_edge_settings(config),
        metrics=read_section(config, "backend.metrics", MetricsSettings),
        tracing=read_tracing_settings(config),
        lifecycle=read_lifecycle_settings(config),
    )
    if settings.gateway.processes < 1:
        raise ConfigError("Invalid config: backend.gateway.processes must be at least 1")
    if not 0 <= settings.listen.port <= 65535:
        source = config.source("backend.listen.port")
        where = f" (from {source})" if source else ""
        raise ConfigError(
            f"Invalid config: backend.listen.port must be between 0 and 65535, got {settings.listen.port}{where}"
        )
    if not 0 < settings.auth.key_duration_seconds <= 3600:
        raise ConfigError("Invalid config: backend.auth.keyDurationSeconds must be more than 0 and at most 3600")
    _check_remote(settings)
    store = settings.auth.plugin_key_store
    if store.type == "static" and (not store.static.keys or store.static.keys[0].private_key_file is None):
        raise ConfigError(
            "Invalid config: backend.auth.pluginKeyStore of type static needs static.keys, "
            "the first with a privateKeyFile to sign with"
        )
    return settings


def _check_remote(settings: Settings) -> None:
    """``backend.workers.remote``: addresses that parse, and the key files named."""
    remote = settings.workers.remote
    if remote is None:
        return
    key = "backend.workers.remote"
    for name, value in (("listen", remote.listen), ("advertise", remote.advertise)):
        if value is None:
            continue
        try:
            split_address(value)
        except ValueError as exc:
            raise ConfigError(f"Invalid config: {key}.{name}: {exc}") from None
    for name, value in (("serverKey", remote.server_key), ("allowedKeys", remote.allowed_keys)):
        if not value:
            raise ConfigError(f"Invalid config: {key}.{name} is required when {key} is set")

"""The kernel's own settings, read from the app-config with defaults and precise errors."""

from __future__ import annotations

from typing import Literal

import msgspec

from kernel.config import Config, ConfigError, read_section


class _S(msgspec.Struct, forbid_unknown_fields=True, rename="camel", frozen=True):
    pass


class Listen(_S, frozen=True):
    host: str = "0.0.0.0"
    port: int = 7007


class GatewaySettings(_S, frozen=True):
    processes: int = 1
    server: Literal["hypercorn", "uvicorn"] = "hypercorn"
    request_timeout: float = 30.0
    max_request_body_size: int = 100 * 1024 * 1024
    mount: str = "/api"


class PluginWorkers(_S, frozen=True):
    replicas: int | None = None


class WorkerSettings(_S, frozen=True):
    replicas: int = 1
    heartbeat_interval: float = 0.5
    heartbeat_timeout: float = 5.0
    start_timeout: float = 30.0
    restart_initial_delay: float = 0.1
    restart_max_delay: float = 10.0
    flapping_limit: int = 5
    flapping_window: float = 60.0
    shutdown_grace: float = 10.0
    kill_timeout: float = 5.0
    plugins: dict[str, PluginWorkers] = {}


class BootPolicy(_S, frozen=True):
    on_plugin_boot_failure: Literal["abort", "continue"] = "abort"


class Startup(_S, frozen=True):
    default: BootPolicy = BootPolicy()
    plugins: dict[str, BootPolicy] = {}


class Settings(msgspec.Struct, frozen=True):
    listen: Listen = Listen()
    gateway: GatewaySettings = GatewaySettings()
    workers: WorkerSettings = WorkerSettings()
    startup: Startup = Startup()

    def replicas(self, plugin_id: str) -> int:
        own = self.workers.plugins.get(plugin_id)
        return own.replicas if own is not None and own.replicas is not None else self.workers.replicas

    def boot_policy(self, plugin_id: str) -> str:
        own = self.startup.plugins.get(plugin_id)
        return (own or self.startup.default).on_plugin_boot_failure


def read_settings(config: Config) -> Settings:
    """Settings from ``backend.listen``, ``backend.gateway``, ``backend.workers``, ``backend.startup``."""
    settings = Settings(
        listen=read_section(config, "backend.listen", Listen),
        gateway=read_section(config, "backend.gateway", GatewaySettings),
        workers=read_section(config, "backend.workers", WorkerSettings),
        startup=read_section(config, "backend.startup", Startup),
    )
    if settings.gateway.processes < 1:
        raise ConfigError("Invalid config: backend.gateway.processes must be at least 1")
    return settings

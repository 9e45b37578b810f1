"""Everything a plugin author, or a package that provides services, imports: ``from kernel.api import ...``.

A contract module: it imports only the kernel's other contract modules (no I/O, no zmq, no asyncio).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from kernel.core_services import (
    CacheService,
    Database,
    DatabaseService,
    Discovery,
    Health,
    HttpRouter,
    Lifecycle,
    Logger,
    PluginMetadata,
    RootConfig,
    Scheduler,
    core_services,
)
from kernel.errors import (
    AuthenticationError,
    ConfigError,
    ConflictError,
    InputError,
    KernelError,
    NotAllowedError,
    NotFoundError,
    NotModifiedError,
    PluginDeclarationError,
    ServiceUnavailableError,
)
from kernel.errors import (
    NotImplementedError_ as NotImplementedError,
)
from kernel.hookspecs import hookimpl
from kernel.hooktypes import CliCommand, CredentialVerifier, GatewayView
from kernel.plugin import BackendPlugin, create_plugin
from kernel.protocol import NO_PRINCIPAL, Principal
from kernel.service import ServiceFactory, ServiceRef, create_service_factory, create_service_ref
from kernel.settings import PLUGIN_LOGGER_PREFIX, ConfigReader, Settings, read_section, read_settings
from kernel.settings import merge as merge_config

__all__ = [
    "PLUGIN_LOGGER_PREFIX",
    "AuthenticationError",
    "BackendPlugin",
    "CacheService",
    "CliCommand",
    "ConfigError",
    "ConfigReader",
    "ConflictError",
    "CredentialVerifier",
    "Database",
    "DatabaseService",
    "Discovery",
    "GatewayView",
    "Health",
    "HttpRouter",
    "InputError",
    "KernelError",
    "Lifecycle",
    "Logger",
    "NotAllowedError",
    "NotFoundError",
    "NotImplementedError",
    "NotModifiedError",
    "PluginDeclarationError",
    "PluginMetadata",
    "Principal",
    "RootConfig",
    "Scheduler",
    "Secret",
    "ServiceFactory",
    "ServiceRef",
    "ServiceUnavailableError",
    "Settings",
    "core_services",
    "create_plugin",
    "create_service_factory",
    "create_service_ref",
    "hookimpl",
    "merge_config",
    "principal_of",
    "read_section",
    "read_settings",
]


#: a config schema field type whose value is redacted by ``kernel config print`` and in logs
Secret = Annotated[str, msgspec.Meta(extra={"secret": True})]


def principal_of(request: Any) -> Principal:
    """The caller the gateway verified for this request (a Starlette ``Request`` or an ASGI scope)."""
    scope = getattr(request, "scope", request)
    principal = scope.get("kernel.principal")
    return principal if isinstance(principal, Principal) else NO_PRINCIPAL

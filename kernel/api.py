"""Everything a plugin author imports: ``from kernel.api import ...``."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from kernel.core_services import (
    HttpRouter,
    Lifecycle,
    Logger,
    PluginMetadata,
    RootConfig,
    core_services,
)
from kernel.errors import (
    AuthenticationError,
    ConflictError,
    InputError,
    KernelError,
    NotAllowedError,
    NotFoundError,
    NotModifiedError,
    ServiceUnavailableError,
)
from kernel.errors import (
    NotImplementedError_ as NotImplementedError,
)
from kernel.hookspecs import hookimpl
from kernel.plugin import BackendPlugin, PluginDeclarationError, create_plugin
from kernel.protocol import NO_PRINCIPAL, Principal
from kernel.service import ServiceFactory, ServiceRef, create_service_factory, create_service_ref

__all__ = [
    "AuthenticationError",
    "BackendPlugin",
    "ConflictError",
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
    "Secret",
    "ServiceFactory",
    "ServiceRef",
    "ServiceUnavailableError",
    "core_services",
    "create_plugin",
    "create_service_factory",
    "create_service_ref",
    "hookimpl",
    "principal_of",
]


#: a config schema field type whose value is redacted by ``kernel config print`` and in logs
Secret = Annotated[str, msgspec.Meta(extra={"secret": True})]


def principal_of(request: Any) -> Principal:
    """The caller the gateway verified for this request (a Starlette ``Request`` or an ASGI scope)."""
    scope = getattr(request, "scope", request)
    principal = scope.get("kernel.principal")
    return principal if isinstance(principal, Principal) else NO_PRINCIPAL

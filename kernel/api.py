"""Everything a plugin author, or a package that provides services, imports: ``from kernel.api import ...``.

A contract module: it imports only the kernel's other contract modules (no I/O, no zmq, no asyncio).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from kernel.core_services import (
    USER_COOKIE,
    Auth,
    CacheService,
    Credentials,
    Database,
    DatabaseService,
    Discovery,
    Health,
    HookCaller,
    HttpAuth,
    HttpRouter,
    Lifecycle,
    Logger,
    PermissionsRegistryService,
    PermissionsService,
    PluginClient,
    PluginMetadata,
    PluginResponse,
    PrincipalType,
    RootConfig,
    Scheduler,
    UserInfo,
    UserInfoResult,
    core_services,
    presented_token,
)
from kernel.errors import (
    AuthenticationError,
    BadGatewayError,
    ConfigError,
    ConflictError,
    GatewayTimeoutError,
    InputError,
    KernelError,
    NotAllowedError,
    NotFoundError,
    NotModifiedError,
    PayloadTooLargeError,
    PluginDeclarationError,
    ServiceUnavailableError,
    TooManyRequestsError,
)
from kernel.errors import (
    NotImplementedError_ as NotImplementedError,
)
from kernel.hookspecs import hookimpl
from kernel.hooktypes import (
    CliCommand,
    CredentialVerifier,
    GatewayMiddleware,
    GatewayView,
    Verified,
    verify_token,
)
from kernel.openapi_spec import OpenApi, Operation
from kernel.permissions import (
    ALLOWED,
    DENIED,
    AllOf,
    AnyOf,
    AuthorizeRequest,
    AuthorizeResult,
    ConditionalDecision,
    DefinitiveDecision,
    GetResources,
    Not,
    Permission,
    PermissionCondition,
    PermissionCriteria,
    PermissionPolicy,
    PermissionRule,
    PolicyDecision,
    PolicyQuery,
    PolicyUser,
    QueryRequest,
    apply_conditions,
    conditional_decision,
    conditions_to_query,
    create_permission,
)
from kernel.plugin import (
    BackendModule,
    BackendPlugin,
    ExtensionPoint,
    create_extension_point,
    create_module,
    create_plugin,
)
from kernel.protocol import NO_PRINCIPAL, PermissionRestriction, Principal
from kernel.service import ServiceFactory, ServiceRef, create_service_factory, create_service_ref
from kernel.settings import (
    PLUGIN_LOGGER_PREFIX,
    ConfigReader,
    Settings,
    StaticKey,
    access_restrictions_of,
    read_section,
    read_settings,
    split_names,
)
from kernel.settings import merge as merge_config

__all__ = [
    "ALLOWED",
    "DENIED",
    "NO_PRINCIPAL",
    "PLUGIN_LOGGER_PREFIX",
    "USER_COOKIE",
    "AllOf",
    "AnyOf",
    "Auth",
    "AuthenticationError",
    "AuthorizeRequest",
    "AuthorizeResult",
    "BackendModule",
    "BackendPlugin",
    "BadGatewayError",
    "CacheService",
    "CliCommand",
    "ConditionalDecision",
    "ConfigError",
    "ConfigReader",
    "ConflictError",
    "CredentialVerifier",
    "Credentials",
    "Database",
    "DatabaseService",
    "DefinitiveDecision",
    "Discovery",
    "ExtensionPoint",
    "GatewayMiddleware",
    "GatewayTimeoutError",
    "GatewayView",
    "GetResources",
    "Health",
    "HookCaller",
    "HttpAuth",
    "HttpRouter",
    "InputError",
    "KernelError",
    "Lifecycle",
    "Logger",
    "Not",
    "NotAllowedError",
    "NotFoundError",
    "NotImplementedError",
    "NotModifiedError",
    "OpenApi",
    "Operation",
    "PayloadTooLargeError",
    "Permission",
    "PermissionCondition",
    "PermissionCriteria",
    "PermissionPolicy",
    "PermissionRestriction",
    "PermissionRule",
    "PermissionsRegistryService",
    "PermissionsService",
    "PluginClient",
    "PluginDeclarationError",
    "PluginMetadata",
    "PluginResponse",
    "PolicyDecision",
    "PolicyQuery",
    "PolicyUser",
    "Principal",
    "PrincipalType",
    "QueryRequest",
    "RootConfig",
    "Scheduler",
    "Secret",
    "ServiceFactory",
    "ServiceRef",
    "ServiceUnavailableError",
    "Settings",
    "StaticKey",
    "TooManyRequestsError",
    "UserInfo",
    "UserInfoResult",
    "Verified",
    "access_restrictions_of",
    "apply_conditions",
    "conditional_decision",
    "conditions_to_query",
    "core_services",
    "create_extension_point",
    "create_module",
    "create_permission",
    "create_plugin",
    "create_service_factory",
    "create_service_ref",
    "hookimpl",
    "merge_config",
    "presented_token",
    "principal_of",
    "read_section",
    "read_settings",
    "split_names",
    "verify_token",
]


#: a config schema field type whose value is redacted by ``kernel config print`` and in logs
Secret = Annotated[str, msgspec.Meta(extra={"secret": True})]


def principal_of(request: Any) -> Principal:
    """The caller the gateway verified for this request (a Starlette ``Request`` or an ASGI scope)."""
    scope = getattr(request, "scope", request)
    principal = scope.get("kernel.principal")
    return principal if isinstance(principal, Principal) else NO_PRINCIPAL

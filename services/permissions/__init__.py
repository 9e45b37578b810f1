"""The ``permissions`` and ``permissions_registry`` services (Backstage's permission framework).

``registry``: what a plugin declares; ``evaluator``: how a request is decided; ``policy``: which
policy decides (hook ``kernel_permission_policy``); ``metadata``: the plugin's permission metadata
route. The types and the condition helpers are the contract module ``kernel.permissions``.

Config: ``permission.enabled`` (default false: everything is allowed, except what a service
principal's permission restrictions leave out).
"""

from __future__ import annotations

import msgspec

from kernel.api import (
    HookCaller,
    HttpRouter,
    Logger,
    PermissionsRegistryService,
    PluginMetadata,
    RootConfig,
    ServiceFactory,
    core_services,
    create_service_factory,
)
from kernel_services.permissions.evaluator import PolicyPermissions
from kernel_services.permissions.metadata import add_metadata_route
from kernel_services.permissions.policy import AllowAllPolicy, installed_policy
from kernel_services.permissions.registry import PluginPermissionsRegistry

__all__ = [
    "FACTORIES",
    "AllowAllPolicy",
    "PermissionSettings",
    "PluginPermissionsRegistry",
    "PolicyPermissions",
    "add_metadata_route",
    "installed_policy",
]


class PermissionSettings(msgspec.Struct, frozen=True):
    """``permission``: the keys of it the services read."""

    enabled: bool = False


@create_service_factory(
    core_services.permissions_registry, {"meta": core_services.plugin_metadata, "router": core_services.http_router}
)
def _registry(meta: PluginMetadata, router: HttpRouter) -> PluginPermissionsRegistry:
    registry = PluginPermissionsRegistry(meta.plugin_id)
    add_metadata_route(registry, router)
    return registry


@create_service_factory(
    core_services.permissions,
    {
        "config": core_services.root_config,
        "registry": core_services.permissions_registry,
        "logger": core_services.logger,
        "meta": core_services.plugin_metadata,
        "hooks": core_services.root_hooks,
    },
)
def _permissions(
    config: RootConfig, registry: PermissionsRegistryService, logger: Logger, meta: PluginMetadata, hooks: HookCaller
) -> PolicyPermissions:
    return PolicyPermissions(meta.plugin_id, config, registry, installed_policy(hooks), logger)


FACTORIES: list[ServiceFactory] = [_registry, _permissions]

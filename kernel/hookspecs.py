"""The contract between the kernel and installed packages: every hook, typed, one line each.

A package listed under the ``kernel.plugins`` entry point group may implement
any of these hooks with ``kernel.api.hookimpl`` (backend plugins themselves are
``BackendPlugin`` objects). The kernel's own features register through the
same hooks: the core services (``services.defaults``), the health and instance
endpoints (``kernel.gateway.root``), static tokens
(``kernel.gateway.static_tokens``), the traces' gateway middleware (``kernel.tracing``)
and the ``kernel`` subcommands (``kernel.cli.commands``). Where each hook runs:

- ``kernel_provide_services``, ``kernel_register_routes``, ``kernel_permission_policy``, ``kernel_audit_event``,
  ``kernel_url_readers``: in each plugin's worker;
- ``kernel_root_routes``, ``kernel_credential_verifiers``, ``kernel_gateway_middleware``: in each gateway process;
- ``kernel_config_schemas``, ``kernel_cli_commands``, ``kernel_root_config_options``: in the ``kernel`` command;
- ``kernel_http_router_options``: in every process.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from kernel.core_services import AuditorEvent, HttpRouter, RootConfig
    from kernel.hooktypes import (
        CliCommand,
        CredentialVerifier,
        GatewayMiddleware,
        GatewayView,
        HttpRouterOptions,
        RootConfigOptions,
    )
    from kernel.permissions import PermissionPolicy
    from kernel.service import ServiceFactory
    from kernel.url_reading import UrlReaderEntry

PROJECT = "kernel"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def kernel_provide_services() -> Sequence[ServiceFactory]:
    """Provide service implementations; a package loaded later overrides one loaded earlier."""
    raise NotImplementedError


@hookspec
def kernel_register_routes(plugin_id: str, router: HttpRouter) -> None:
    """Add routes or auth policies to the router of plugin ``plugin_id``, in its worker."""


@hookspec
def kernel_root_routes(gateway: GatewayView, config: RootConfig) -> Sequence[BaseRoute]:
    """Add Starlette routes at the gateway's root, outside the plugin mount (health, metrics, ...); ``config`` is live."""
    raise NotImplementedError


@hookspec
def kernel_credential_verifiers(config: RootConfig) -> Sequence[CredentialVerifier]:
    """Verifiers of presented tokens, built from the config (again after every reload)."""
    raise NotImplementedError


@hookspec
def kernel_gateway_middleware(config: RootConfig) -> Sequence[GatewayMiddleware]:
    """ASGI middleware (``app -> app``) around every request, inside the HTTP edge (it sees ids, errors as answers)."""
    raise NotImplementedError


@hookspec
def kernel_config_schemas() -> Mapping[str, Any]:
    """Config keys this package reads, each with the msgspec type ``kernel config check`` validates."""
    raise NotImplementedError


@hookspec
def kernel_cli_commands() -> Sequence[CliCommand]:
    """Subcommands this package adds to the ``kernel`` command."""
    raise NotImplementedError


@hookspec(firstresult=True)
def kernel_root_config_options() -> RootConfigOptions:
    """The config loader's arguments (``argv``, ``remote``) for ``kernel serve``; the package loaded last wins."""
    raise NotImplementedError


@hookspec(firstresult=True)
def kernel_http_router_options() -> HttpRouterOptions:
    """Where each plugin is served (``get_path``), in every process; the package loaded last wins."""
    raise NotImplementedError


@hookspec(firstresult=True)
def kernel_permission_policy() -> PermissionPolicy:
    """The policy deciding every permission of every plugin; the package loaded last wins (none: allow all)."""
    raise NotImplementedError


@hookspec
def kernel_audit_event(event: AuditorEvent) -> Awaitable[None] | None:
    """Ship an audit event elsewhere (it is logged already); may return an awaitable, which is awaited."""


@hookspec
def kernel_url_readers(config: RootConfig) -> Sequence[UrlReaderEntry]:
    """Readers for the ``url_reader`` service, each with the URLs it takes; a later package's are asked first."""
    raise NotImplementedError

"""The built-in service providers, registered through the same hooks as any installed package.

Each module listed in ``MODULES`` exposes ``FACTORIES``, a list of ``ServiceFactory``.
``kernel config check`` validates the config keys the services declare in ``kernel_config_schemas``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

from kernel.api import (
    CredentialVerifier,
    HttpRouterOptions,
    RootConfig,
    RootConfigOptions,
    ServiceFactory,
    UrlReaderEntry,
    hookimpl,
)
from kernel_services.auditor import AuditorSettings
from kernel_services.cache import CacheSettings
from kernel_services.discovery import DiscoveryEndpoint
from kernel_services.permissions import PermissionSettings
from kernel_services.url_reader import ReadingSettings, fetch_readers
from kernel_services.url_reader_git import Integration, git_readers

MODULES = (
    "kernel_services.logger",
    "kernel_services.lifecycle",
    "kernel_services.cache",
    "kernel_services.database",
    "kernel_services.discovery",
    "kernel_services.scheduler",
    "kernel_services.health",
    "kernel_services.permissions",
    "kernel_services.auth.factories",
    "kernel_services.identity",
    "kernel_services.auditor",
    "kernel_services.url_reader",
)


@hookimpl
def kernel_provide_services() -> Sequence[ServiceFactory]:
    factories: list[ServiceFactory] = []
    for name in MODULES:
        factories.extend(importlib.import_module(name).FACTORIES)
    return factories


@hookimpl
def kernel_credential_verifiers(config: RootConfig) -> Sequence[CredentialVerifier]:
    """Plugin tokens and user tokens, checked in the gateway against the issuers' published keys."""
    from kernel_services.auth.factories import credential_verifiers

    return credential_verifiers(config)


@hookimpl
def kernel_config_schemas() -> Mapping[str, Any]:
    """``backend.cache``, ``backend.auditor``, ``backend.reading``, ``integrations.github`` and ``.gitlab``,
    ``discovery.endpoints``, ``permission``; ``backend.database`` is checked when opened."""
    return {
        "backend.cache": CacheSettings,
        "backend.auditor": AuditorSettings,
        "backend.reading": ReadingSettings,
        "integrations.github": list[Integration],
        "integrations.gitlab": list[Integration],
        "discovery.endpoints": list[DiscoveryEndpoint],
        "permission": PermissionSettings,
    }


@hookimpl
def kernel_root_config_options() -> RootConfigOptions:
    """``--config`` from the command line; URLs allowed, read again every 60 s (the reference system's default)."""
    return RootConfigOptions()


@hookimpl
def kernel_http_router_options() -> HttpRouterOptions:
    """Each plugin at ``<backend.gateway.mount>/<pluginId>`` (``/api/<pluginId>``)."""
    return HttpRouterOptions()


@hookimpl
def kernel_url_readers(config: RootConfig) -> Sequence[UrlReaderEntry]:
    """The readers of ``integrations.github`` and ``integrations.gitlab`` (github.com and gitlab.com always),
    then the plain HTTP(S) reader of the hosts and paths ``backend.reading.allow`` lists."""
    return [*git_readers(config), *fetch_readers(config)]

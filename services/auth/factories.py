"""Building the token system's services in a worker, and its verifiers in a gateway."""

from __future__ import annotations

from collections.abc import Sequence

from kernel.api import (
    ConfigReader,
    CredentialVerifier,
    DatabaseService,
    Discovery,
    HttpRouter,
    Lifecycle,
    Logger,
    PluginMetadata,
    RootConfig,
    ServiceFactory,
    core_services,
    create_service_factory,
    read_settings,
)
from kernel_services.auth.client import HttpPluginClient
from kernel_services.auth.http_auth import DefaultHttpAuth
from kernel_services.auth.keys import PluginKeys, StaticPluginKeys
from kernel_services.auth.service import DefaultAuth
from kernel_services.auth.user_info import TokenUserInfo
from kernel_services.auth.verifiers import token_verifiers
from kernel_services.discovery import HostDiscovery


def credential_verifiers(config: ConfigReader) -> list[CredentialVerifier]:
    """The gateway's verifiers (for ``kernel_credential_verifiers``): plugin and user tokens, external access."""
    discovery = HostDiscovery.from_config(config)
    return [*token_verifiers(discovery, own_origin=discovery.internal_base), *_external(config)]


def _external(config: ConfigReader) -> Sequence[CredentialVerifier]:
    """The ``legacy`` and ``jwks`` external-access verifiers, when the config has such entries."""
    if not any(entry.type in ("legacy", "jwks") for entry in read_settings(config).auth.external_access):
        return []  # no JOSE library loaded for nothing
    from kernel_services.auth.external import external_verifiers

    return external_verifiers(config)


@create_service_factory(
    core_services.auth,
    {
        "meta": core_services.plugin_metadata,
        "config": core_services.root_config,
        "database": core_services.database,
        "discovery": core_services.discovery,
        "logger": core_services.logger,
        "router": core_services.http_router,
    },
    eager=True,  # every plugin publishes its keys, issuing tokens or not
)
def _auth(
    meta: PluginMetadata,
    config: RootConfig,
    database: DatabaseService,
    discovery: Discovery,
    logger: Logger,
    router: HttpRouter,
) -> DefaultAuth:
    verifiers: list[CredentialVerifier] = [*token_verifiers(discovery), *_external(config)]
    settings = read_settings(config).auth
    store = settings.plugin_key_store
    keys: PluginKeys | StaticPluginKeys
    if store.type == "static":
        keys = StaticPluginKeys(store.static.keys, settings.key_duration_seconds)
    else:
        keys = PluginKeys(database, logger.child(component="auth"), settings.key_duration_seconds)
    auth = DefaultAuth(meta.plugin_id, keys, verifiers)
    auth.serve_keys(router)
    return auth


@create_service_factory(
    core_services.http_auth,
    {
        "meta": core_services.plugin_metadata,
        "auth": core_services.auth,
        "discovery": core_services.discovery,
        "router": core_services.http_router,
    },
    eager=True,  # every plugin serves the user-cookie endpoint
)
def _http_auth(meta: PluginMetadata, auth: DefaultAuth, discovery: Discovery, router: HttpRouter) -> DefaultHttpAuth:
    http_auth = DefaultHttpAuth(auth, lambda: discovery.get_external_base_url(meta.plugin_id))
    http_auth.serve_cookie(router)
    return http_auth


@create_service_factory(core_services.user_info)
def _user_info() -> TokenUserInfo:
    return TokenUserInfo()


@create_service_factory(
    core_services.plugin_client,
    {"auth": core_services.auth, "discovery": core_services.discovery, "lifecycle": core_services.lifecycle},
)
def _plugin_client(auth: DefaultAuth, discovery: Discovery, lifecycle: Lifecycle) -> HttpPluginClient:
    client = HttpPluginClient(auth, discovery)
    lifecycle.add_shutdown_hook(client.close, label="close the plugin client")
    return client


FACTORIES: list[ServiceFactory] = [_auth, _http_auth, _user_info, _plugin_client]

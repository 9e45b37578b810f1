"""The ``auth`` plugin: wires config, keys, issuer and routes inside each of its workers."""

from __future__ import annotations

from typing import Any

from kernel.api import (
    ConfigError,
    DatabaseService,
    Discovery,
    HttpRouter,
    Lifecycle,
    Logger,
    RootConfig,
    core_services,
    create_plugin,
    read_section,
)

from .config import AuthConfig, token_lifetime
from .issuer import UserTokenIssuer
from .keys import KeyStore, SigningKeys
from .openapi import DOCUMENT
from .routes import AuthRoutes

__all__ = ["PLUGIN_ID", "plugin"]

PLUGIN_ID = "auth"

plugin = create_plugin(PLUGIN_ID, config_schema=AuthConfig, openapi=DOCUMENT)


@plugin.init(
    router=core_services.http_router,
    logger=core_services.logger,
    config=core_services.root_config,
    database=core_services.database,
    discovery=core_services.discovery,
    lifecycle=core_services.lifecycle,
)
async def init(
    router: HttpRouter,
    logger: Logger,
    config: RootConfig,
    database: DatabaseService,
    discovery: Discovery,
    lifecycle: Lifecycle,
) -> None:
    current = [read_section(config, PLUGIN_ID, AuthConfig)]

    def reload(new_config: Any) -> None:
        try:
            current[0] = read_section(new_config, PLUGIN_ID, AuthConfig)
        except ConfigError as exc:  # keep the previous settings
            logger.error("auth config not reloaded", error=str(exc))

    config.subscribe(reload)
    keys = SigningKeys(KeyStore(database), logger)
    issuer = UserTokenIssuer(PLUGIN_ID, keys, discovery, lambda: current[0], logger)
    AuthRoutes(issuer, keys, lambda: current[0], logger).register(router)

    async def publish_first_key() -> None:
        # Publish this worker's key before the first token: verifiers that fetched the JWKS already
        # know it. A database problem here is logged (lifecycle), not fatal: the next token retries.
        settings = current[0]
        await keys.current(settings.key_rotation_seconds, token_lifetime(settings), sign=False)

    lifecycle.add_startup_hook(publish_first_key, label="publish the first signing key")
    # before the database closes (its shutdown hook was registered before this init ran)
    lifecycle.add_before_shutdown_hook(keys.retire, label="unpublish an unused signing key")

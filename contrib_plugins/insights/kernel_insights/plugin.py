"""The ``insights`` plugin (mounted at ``/api/insights``): the seed's ``createBackendPlugin`` + ``createRouter``.

- ``GET /health``: open (an ``unauthenticated`` auth policy), ``{"status": "ok"}``.
- ``GET /services/{id}``: users only (a service token is 403, none 401); the id must match
  ``SERVICE_ID`` (else 400 ``InputError``, before any upstream call); the permission
  ``insights.service.read`` must be allowed (403 otherwise; everything is allowed while
  ``permission.enabled`` is false); then the internal API's JSON object for the service, plus
  ``requestedBy`` (the caller's user entity ref).

Config (``insights``, see ``kernel_insights.config``) is read at start-up and again after each
reload; errors are kernel errors, which the kernel answers in its one error shape.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse

from kernel.api import (
    ConfigError,
    HttpAuth,
    HttpRouter,
    InputError,
    Lifecycle,
    Logger,
    NotAllowedError,
    OpenApi,
    Operation,
    PermissionsRegistryService,
    PermissionsService,
    RootConfig,
    ServiceUnavailableError,
    UserInfo,
    core_services,
    create_permission,
    create_plugin,
    read_section,
)

from .config import SERVICE_ID, InsightsConfig, valid_service_id
from .upstream import Upstream

__all__ = ["SERVICE_READ", "plugin"]

plugin = create_plugin(
    "insights",
    config_schema=InsightsConfig,
    openapi=OpenApi(title="insights", description="Delivery insights of a service, from the internal API"),
)


class Status(msgspec.Struct):
    status: str


class ServicePath(msgspec.Struct):
    id: Annotated[str, msgspec.Meta(pattern=SERVICE_ID.pattern, description="A service id")]


class ServiceInsights(msgspec.Struct, rename="camel"):
    """The internal API's object for the service (its fields as it sends them), and who asked."""

    requested_by: str


HEALTH = Operation(summary="The plugin is up", response=Status)
SERVICE = Operation(
    summary="Insights of one service, asked of the internal API on behalf of the user",
    path_params=ServicePath,
    response=ServiceInsights,
    errors={
        400: "The service id is not valid",
        401: "No credentials",
        403: "Not a user, or not allowed insights.service.read",
        404: "The internal API knows no such service",
        503: "The internal API is not configured, unreachable, slow or failing",
    },
)

#: asked before the upstream call, as the seed's FAQ suggests (``permissions.authorize``)
SERVICE_READ = create_permission("insights.service.read", {"action": "read"})


def _read(config: Any) -> InsightsConfig:
    return read_section(config, "insights", InsightsConfig)


@plugin.init(
    router=core_services.http_router,
    logger=core_services.logger,
    config=core_services.root_config,
    http_auth=core_services.http_auth,
    user_info=core_services.user_info,
    lifecycle=core_services.lifecycle,
    permissions=core_services.permissions,
    registry=core_services.permissions_registry,
)
async def init(
    router: HttpRouter,
    logger: Logger,
    config: RootConfig,
    http_auth: HttpAuth,
    user_info: UserInfo,
    lifecycle: Lifecycle,
    permissions: PermissionsService,
    registry: PermissionsRegistryService,
) -> None:
    settings = _read(config)  # the worker already checked it against the schema: this cannot fail
    _announce(logger, settings)

    def reloaded(new_config: Any) -> None:
        nonlocal settings
        try:
            fresh = _read(new_config)
        except ConfigError as exc:
            logger.error("insights config reload refused, keeping the previous one", error=str(exc))
            return
        if fresh != settings:
            settings = fresh
            _announce(logger, settings)

    config.subscribe(reloaded)
    upstream = Upstream(logger)
    lifecycle.add_shutdown_hook(upstream.close, label="insights upstream session")
    registry.add_permissions([SERVICE_READ])

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def service(request: Request) -> JSONResponse:
        credentials = await http_auth.credentials(request, allow=["user"])
        service_id: str = request.path_params["id"]
        if not valid_service_id(service_id):
            raise InputError(f"Invalid service id: {service_id[:80]!r} (must match {SERVICE_ID.pattern})")
        decision = (await permissions.authorize([{"permission": SERVICE_READ}], credentials=credentials))[0]
        if not decision.allowed:
            raise NotAllowedError(f"Not allowed to read insights ({SERVICE_READ.name})")
        current = settings
        if not isinstance(current.external_api_url, str):
            raise ServiceUnavailableError("The insights plugin is not configured: set insights.externalApiUrl")
        user = await user_info.get_user_info(credentials)
        logger.info("fetching insights", service=service_id, actor=user.user_entity_ref)
        data = await upstream.service(current.external_api_url, service_id, timeout=current.timeout_seconds)
        return JSONResponse({**data, "requestedBy": user.user_entity_ref})

    router.add_route("/health", health, methods=["GET"], openapi=HEALTH)
    router.add_route("/services/{id}", service, methods=["GET"], openapi=SERVICE)
    router.add_auth_policy("/health", allow="unauthenticated")  # everything else needs credentials


def _announce(logger: Logger, settings: InsightsConfig) -> None:
    if isinstance(settings.external_api_url, str):
        logger.info("insights upstream", url=settings.external_api_url, timeout=settings.timeout_seconds)
    else:
        logger.warning("insights.externalApiUrl is not configured: /services/{id} answers 503 until it is")

"""The core services: a typed protocol and a service ref for each.

Implementations live in the ``services`` package and are provided through the
``kernel_provide_services`` hook, so any installed package can replace them.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal, Protocol, runtime_checkable

from kernel.openapi_spec import OpenApi, Operation
from kernel.permissions import (
    AuthorizeRequest,
    DefinitiveDecision,
    GetResources,
    Permission,
    PermissionRule,
    PolicyDecision,
    QueryRequest,
)
from kernel.protocol import Principal
from kernel.service import ServiceRef
from kernel.settings import ConfigReader
from kernel.url_reading import UrlReaderService

ASGIApp = Callable[..., Awaitable[None]]


@runtime_checkable
class Logger(Protocol):
    """Structured logger bound to a plugin; ``child`` adds fields to every line."""

    def debug(self, msg: str, **fields: Any) -> None: ...
    def info(self, msg: str, **fields: Any) -> None: ...
    def warning(self, msg: str, **fields: Any) -> None: ...
    def error(self, msg: str, **fields: Any) -> None: ...
    def exception(self, msg: str, **fields: Any) -> None: ...
    def child(self, **fields: Any) -> Logger: ...


class RootConfig(ConfigReader, Protocol):
    """The merged app-config (see ``kernel.config.Config``), following reloads."""

    def subscribe(self, callback: Callable[[Any], Any]) -> Callable[[], None]:
        """Call ``callback(new_config)`` after each reload that changed the config; returns an unsubscribe."""
        ...


class HttpRouter(Protocol):
    """The plugin's routes, mounted at ``/api/<pluginId>``; secure by default."""

    def add_route(
        self,
        path: str,
        endpoint: Callable[..., Any],
        *,
        methods: Sequence[str] | None = None,
        name: str | None = None,
        openapi: Operation | None = None,
    ) -> None:
        """A route; ``openapi`` describes it in the plugin's OpenAPI document (parameters, body, answer)."""
        ...

    def set_openapi(self, openapi: OpenApi) -> None:
        """Attach or replace the plugin's OpenAPI document, served (open) at ``/openapi.json``."""
        ...

    def add_websocket_route(self, path: str, endpoint: Callable[..., Any], *, name: str | None = None) -> None: ...
    def mount(self, path: str, app: ASGIApp) -> None: ...
    def use(self, app: ASGIApp) -> None: ...
    def add_auth_policy(self, path: str, allow: Literal["unauthenticated", "user-cookie"]) -> None:
        """Open ``path`` (a prefix); callable after start-up too: the gateways follow within a moment."""
        ...

    def remove_auth_policy(self, path: str) -> bool:
        """Close ``path`` again; false if no policy was on exactly that path."""
        ...


class PluginMetadata(Protocol):
    """Facts about the plugin a service instance belongs to."""

    @property
    def plugin_id(self) -> str: ...


class Lifecycle(Protocol):
    """Startup and shutdown hooks of a plugin (or of the process, for the root lifecycle)."""

    def add_startup_hook(self, hook: Callable[[], Any], *, label: str = "") -> None: ...
    def add_before_shutdown_hook(self, hook: Callable[[], Any], *, label: str = "") -> None: ...
    def add_shutdown_hook(self, hook: Callable[[], Any], *, label: str = "") -> None: ...


class CacheService(Protocol):
    """Per-plugin key/value cache; values must be JSON-compatible."""

    async def get(self, key: str) -> Any | None: ...
    async def set(self, key: str, value: Any, *, ttl: float | None = None) -> None: ...
    async def delete(self, key: str) -> None: ...
    def with_options(self, *, default_ttl: float | None = None) -> CacheService: ...


class Database(Protocol):
    """An async connection pool to the plugin's own database."""

    dialect: str  # "sqlite" | "postgres"

    async def execute(self, sql: str, *params: Any) -> int: ...
    async def fetch_all(self, sql: str, *params: Any) -> list[dict[str, Any]]: ...
    async def fetch_one(self, sql: str, *params: Any) -> dict[str, Any] | None: ...
    async def fetch_val(self, sql: str, *params: Any) -> Any: ...
    def transaction(self) -> Any: ...  # async context manager yielding a Database


class DatabaseService(Protocol):
    """The plugin's isolated database, with ordered per-plugin migrations applied once."""

    async def get_client(self) -> Database: ...
    async def migrate(self, migrations: Sequence[tuple[str, str]]) -> list[str]: ...


class Discovery(Protocol):
    """Where a plugin's API lives, for other plugins and for the outside world."""

    async def get_base_url(self, plugin_id: str) -> str: ...
    async def get_external_base_url(self, plugin_id: str) -> str: ...


class Scheduler(Protocol):
    """Runs tasks on a cron or fixed frequency, locally or once across all instances."""

    async def schedule_task(
        self,
        id: str,
        fn: Callable[[], Awaitable[None]],
        *,
        frequency: str | float | timedelta,
        timeout: float,
        initial_delay: float = 0.0,
        scope: Literal["global", "local"] = "global",
    ) -> None: ...
    async def trigger_task(self, id: str) -> None: ...
    async def list_tasks(self) -> list[dict[str, Any]]: ...


class Health(Protocol):
    """Lets a plugin contribute a readiness check."""

    def add_readiness_check(self, check: Callable[[], Awaitable[bool]], *, label: str = "") -> None: ...
    async def failing_checks(self) -> list[str]:
        """Labels of the checks that fail now (the kernel calls this)."""
        ...


@dataclass(frozen=True)
class Credentials:
    """Who a request or a call comes from, as the ``auth`` services hand it around.

    ``expires_at`` (epoch seconds) bounds tokens issued on its behalf. ``token`` is the token
    it was made from, kept to act on a user's behalf; it never appears in ``repr`` or logs.
    """

    principal: Principal
    expires_at: float | None = None
    token: str = field(default="", repr=False)


@dataclass(frozen=True)
class UserInfoResult:
    """A user's identity: their entity ref and the refs of everything they own or belong to."""

    user_entity_ref: str
    ownership_entity_refs: list[str]


PrincipalType = Literal["none", "user", "service", "unknown"]
#: the cookie carrying a limited user token (the reference system's name), read on ``user-cookie`` paths
USER_COOKIE = "backstage-auth"


def presented_token(headers: Sequence[tuple[bytes, bytes]], cookie_ok: bool) -> str | None:
    """The token a request presents in its ASGI ``headers``: the bearer token, else (when ``cookie_ok``)
    the ``USER_COOKIE``; ``None`` when there is none, ``""`` for an ``Authorization`` of another scheme."""
    cookie = None
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token:
                return token.strip()
            return ""
        if cookie_ok and name == b"cookie":
            for part in value.decode("latin-1").split(";"):
                key, _, val = part.strip().partition("=")
                if key == USER_COOKIE:
                    cookie = val
    return cookie


class Auth(Protocol):
    """Tokens of the plugin: verify them, issue them for calls to other plugins (Backstage's AuthService)."""

    async def authenticate(self, token: str, *, allow_limited_access: bool = False) -> Credentials:
        """The credentials a token stands for; ``AuthenticationError`` if it is not valid."""
        ...

    def is_principal(self, credentials: Credentials, type: PrincipalType) -> bool: ...
    async def get_none_credentials(self) -> Credentials: ...
    async def get_own_service_credentials(self) -> Credentials: ...
    async def get_plugin_request_token(self, *, on_behalf_of: Credentials, target_plugin_id: str) -> str:
        """A token for a call to ``target_plugin_id``, as this plugin or on behalf of the user in ``on_behalf_of``."""
        ...

    async def get_limited_user_token(self, credentials: Credentials) -> tuple[str, float]:
        """A limited token (for cookies) of the user in ``credentials``, and when it expires."""
        ...

    async def list_public_service_keys(self) -> list[dict[str, Any]]:
        """The public keys other plugins verify this plugin's tokens with (its JWKS)."""
        ...


class HttpAuth(Protocol):
    """The credentials of an incoming request, checked against what a route allows."""

    async def credentials(
        self, request: Any, *, allow: Sequence[PrincipalType] | None = None, allow_limited_access: bool = False
    ) -> Credentials:
        """The caller's credentials; ``NotAllowedError`` (403) when its principal type is not in ``allow``."""
        ...

    async def issue_user_cookie(self, response: Any, *, credentials: Credentials | None = None) -> float:
        """Set the limited user cookie on ``response``; returns when it expires."""
        ...


class UserInfo(Protocol):
    """Who a user is (Backstage's UserInfoService)."""

    async def get_user_info(self, credentials: Credentials) -> UserInfoResult: ...


@dataclass(frozen=True)
class BackstageUserIdentity:
    """The user a token stands for: their entity ref and what they own or belong to (``ent``)."""

    user_entity_ref: str
    ownership_entity_refs: list[str]
    type: Literal["user"] = "user"


@dataclass(frozen=True)
class BackstageIdentityResponse:
    """What ``identity.get_identity`` answers: the verified user and the token they came with."""

    identity: BackstageUserIdentity
    token: str = field(repr=False)


class IdentityService(Protocol):
    """The user of a request from their user token (Backstage's deprecated IdentityService).

    Prefer ``http_auth`` + ``user_info``: they also take service callers and users reached through
    another plugin.
    """

    async def get_identity(self, request: Any) -> BackstageIdentityResponse | None:
        """The user of ``request``'s bearer token; ``None`` without an ``Authorization`` header,
        ``AuthenticationError`` for a token that is not a valid user token (a service's, say)."""
        ...


AuditorEventSeverityLevel = Literal["low", "medium", "high", "critical"]
AuditorEventStatus = Literal["initiated", "succeeded", "failed"]


@dataclass(frozen=True)
class AuditorEvent:
    """One audit event as the kernel logs it and hands it to ``kernel_audit_event`` (``to_json``: the
    reference system's shape, ``{plugin, eventId, severityLevel, actor, request, meta, status, error}``)."""

    plugin: str
    event_id: str
    severity_level: AuditorEventSeverityLevel
    status: AuditorEventStatus
    #: who acted: ``actorId`` (a user entity ref or a service subject), ``ip``, ``hostname``, ``userAgent``
    actor: Mapping[str, str]
    #: the request it happened in, if any: ``url`` (path and query) and ``method``
    request: Mapping[str, str] | None = None
    meta: Mapping[str, Any] | None = None
    #: why it failed (``status`` ``failed``): the error's text, one per error
    errors: Sequence[str] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "plugin": self.plugin,
            "eventId": self.event_id,
            "severityLevel": self.severity_level,
            "actor": dict(self.actor),
        }
        if self.request is not None:
            out["request"] = dict(self.request)
        if self.meta:
            out["meta"] = dict(self.meta)
        out["status"] = self.status
        if len(self.errors) == 1:
            out["error"] = self.errors[0]
        elif self.errors:
            out["errors"] = list(self.errors)
        return out


class AuditorServiceEvent(Protocol):
    """An audit event under way (``create_event`` logged it as ``initiated``): say how it ended."""

    async def success(self, *, meta: Mapping[str, Any] | None = None) -> None:
        """Log it as ``succeeded``; ``meta`` is merged into the event's."""
        ...

    async def fail(
        self,
        *,
        error: BaseException | str | None = None,
        errors: Sequence[BaseException | str] = (),
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        """Log it as ``failed`` with ``error`` (or several ``errors``); ``meta`` is merged into the event's."""
        ...


class AuditorService(Protocol):
    """Audit events of the plugin: who did what, how severe, how it ended (Backstage's AuditorService)."""

    async def create_event(
        self,
        event_id: str,
        *,
        severity_level: AuditorEventSeverityLevel = "low",
        request: Any = None,
        meta: Mapping[str, Any] | None = None,
    ) -> AuditorServiceEvent:
        """Log ``event_id`` (kebab-case, e.g. ``entity-delete``) as ``initiated``; the actor is the caller
        of ``request`` (a Starlette ``Request``), else this plugin."""
        ...


@dataclass(frozen=True)
class PluginResponse:
    """What another plugin answered: status, headers (lower-case names) and body."""

    status: int
    headers: dict[str, str]
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)


class PluginClient(Protocol):
    """Calls another plugin's API: discovery, a plugin token and error mapping in one object.

    A 4xx/5xx answer raises the matching kernel error (``NotFoundError`` for a 404, ...)
    with the other plugin's message; an unreachable plugin is ``ServiceUnavailableError``.
    """

    async def request(
        self,
        target_plugin_id: str,
        method: str,
        path: str,
        *,
        on_behalf_of: Credentials | None = None,
        json: Any = None,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> PluginResponse:
        """``method`` ``path`` of ``target_plugin_id``, as this plugin or on behalf of ``on_behalf_of``'s user."""
        ...


class PermissionsService(Protocol):
    """Asks the permission policy (Backstage's PermissionsService); see ``kernel.permissions``.

    A ``service`` principal is never put to the policy: it is allowed what its permission
    restrictions for this plugin allow (everything when it has none). With ``permission.enabled``
    false (the default) everything else is allowed too.
    """

    async def authorize(
        self, requests: Sequence[AuthorizeRequest], *, credentials: Credentials
    ) -> list[DefinitiveDecision]:
        """ALLOW or DENY for each request; a CONDITIONAL answer is applied to the request's resource."""
        ...

    async def authorize_conditional(
        self, requests: Sequence[QueryRequest], *, credentials: Credentials
    ) -> list[PolicyDecision]:
        """The policy's answers as they are: CONDITIONAL ones for the plugin to apply as a filter."""
        ...


class PermissionsRegistryService(Protocol):
    """The permissions and rules of the plugin, declared at init; a mistake raises naming the plugin."""

    def add_permissions(self, permissions: Sequence[Permission]) -> None: ...
    def add_resource_type(
        self,
        resource_type: str,
        *,
        permissions: Sequence[Permission] = (),
        rules: Sequence[PermissionRule] = (),
        get_resources: GetResources | None = None,
    ) -> None: ...
    def add_permission_rules(self, rules: Sequence[PermissionRule]) -> None: ...
    def get_permission_rule(self, name: str) -> PermissionRule | None: ...
    def list_permissions(self) -> list[Permission]: ...
    def list_permission_rules(self) -> list[PermissionRule]: ...
    async def get_resources(self, resource_type: str, resource_refs: Sequence[str]) -> list[Any | None]:
        """The resources by ref through the type's ``get_resources`` (all ``None`` without one)."""
        ...


class HookCaller(Protocol):
    """The kernel's hooks (``kernel.hookspecs``) as this process loaded them, for services that need one."""

    def call(self, hook: str, **kwargs: Any) -> Any:
        """Call ``hook``: a list of every package's result (one result for a ``firstresult`` hook)."""
        ...


class _CoreServices:
    """Service refs of the core services, by the names plugin authors know."""

    root_config: ServiceRef[RootConfig] = ServiceRef("core.rootConfig", "root")
    root_logger: ServiceRef[Logger] = ServiceRef("core.rootLogger", "root")
    root_lifecycle: ServiceRef[Lifecycle] = ServiceRef("core.rootLifecycle", "root")
    root_hooks: ServiceRef[HookCaller] = ServiceRef("core.rootHooks", "root")
    logger: ServiceRef[Logger] = ServiceRef("core.logger", "plugin")
    http_router: ServiceRef[HttpRouter] = ServiceRef("core.httpRouter", "plugin")
    plugin_metadata: ServiceRef[PluginMetadata] = ServiceRef("core.pluginMetadata", "plugin")
    lifecycle: ServiceRef[Lifecycle] = ServiceRef("core.lifecycle", "plugin")
    cache: ServiceRef[CacheService] = ServiceRef("core.cache", "plugin")
    database: ServiceRef[DatabaseService] = ServiceRef("core.database", "plugin")
    discovery: ServiceRef[Discovery] = ServiceRef("core.discovery", "plugin")
    scheduler: ServiceRef[Scheduler] = ServiceRef("core.scheduler", "plugin")
    health: ServiceRef[Health] = ServiceRef("core.health", "plugin")
    auth: ServiceRef[Auth] = ServiceRef("core.auth", "plugin")
    http_auth: ServiceRef[HttpAuth] = ServiceRef("core.httpAuth", "plugin")
    user_info: ServiceRef[UserInfo] = ServiceRef("core.userInfo", "plugin")
    identity: ServiceRef[IdentityService] = ServiceRef("core.identity", "plugin")
    auditor: ServiceRef[AuditorService] = ServiceRef("core.auditor", "plugin")
    url_reader: ServiceRef[UrlReaderService] = ServiceRef("core.urlReader", "plugin")
    plugin_client: ServiceRef[PluginClient] = ServiceRef("core.pluginClient", "plugin")
    permissions: ServiceRef[PermissionsService] = ServiceRef("core.permissions", "plugin")
    permissions_registry: ServiceRef[PermissionsRegistryService] = ServiceRef("core.permissionsRegistry", "plugin")


core_services = _CoreServices()

"""The core services: a typed protocol and a service ref for each.

Implementations live in the ``services`` package and are provided through the
``kernel_provide_services`` hook, so any installed package can replace them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any, Literal, Protocol, runtime_checkable

from kernel.service import ServiceRef
from kernel.settings import ConfigReader

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
    ) -> None: ...
    def mount(self, path: str, app: ASGIApp) -> None: ...
    def use(self, app: ASGIApp) -> None: ...
    def add_auth_policy(self, path: str, allow: Literal["unauthenticated", "user-cookie"]) -> None: ...


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


class _CoreServices:
    """Service refs of the core services, by the names plugin authors know."""

    root_config: ServiceRef[RootConfig] = ServiceRef("core.rootConfig", "root")
    root_logger: ServiceRef[Logger] = ServiceRef("core.rootLogger", "root")
    root_lifecycle: ServiceRef[Lifecycle] = ServiceRef("core.rootLifecycle", "root")
    logger: ServiceRef[Logger] = ServiceRef("core.logger", "plugin")
    http_router: ServiceRef[HttpRouter] = ServiceRef("core.httpRouter", "plugin")
    plugin_metadata: ServiceRef[PluginMetadata] = ServiceRef("core.pluginMetadata", "plugin")
    lifecycle: ServiceRef[Lifecycle] = ServiceRef("core.lifecycle", "plugin")
    cache: ServiceRef[CacheService] = ServiceRef("core.cache", "plugin")
    database: ServiceRef[DatabaseService] = ServiceRef("core.database", "plugin")
    discovery: ServiceRef[Discovery] = ServiceRef("core.discovery", "plugin")
    scheduler: ServiceRef[Scheduler] = ServiceRef("core.scheduler", "plugin")
    health: ServiceRef[Health] = ServiceRef("core.health", "plugin")


core_services = _CoreServices()

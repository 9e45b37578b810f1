"""The core services: a typed protocol and a service ref for each.

Implementations live in the ``services`` package and are provided through the
``kernel_provide_services`` hook, so any installed package can replace them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from kernel.service import ServiceRef

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


class RootConfig(Protocol):
    """The merged app-config (see ``kernel.config.Config``)."""

    def get(self, key: str | None = None) -> Any: ...
    def get_optional(self, key: str) -> Any: ...
    def get_string(self, key: str) -> str: ...
    def get_optional_string(self, key: str) -> str | None: ...
    def get_number(self, key: str) -> float: ...
    def get_optional_number(self, key: str) -> float | None: ...
    def get_boolean(self, key: str) -> bool: ...
    def get_optional_boolean(self, key: str) -> bool | None: ...
    def has(self, key: str) -> bool: ...
    def keys(self) -> list[str]: ...


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


class _CoreServices:
    """Service refs of the core services, by the names plugin authors know."""

    root_config: ServiceRef[RootConfig] = ServiceRef("core.rootConfig", "root")
    root_logger: ServiceRef[Logger] = ServiceRef("core.rootLogger", "root")
    root_lifecycle: ServiceRef[Lifecycle] = ServiceRef("core.rootLifecycle", "root")
    logger: ServiceRef[Logger] = ServiceRef("core.logger", "plugin")
    http_router: ServiceRef[HttpRouter] = ServiceRef("core.httpRouter", "plugin")
    plugin_metadata: ServiceRef[PluginMetadata] = ServiceRef("core.pluginMetadata", "plugin")
    lifecycle: ServiceRef[Lifecycle] = ServiceRef("core.lifecycle", "plugin")


core_services = _CoreServices()

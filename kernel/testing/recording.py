"""Recording mocks of the core services (``mock_services.X.mock()``), for unit tests and for a backend.

A mock wraps a working stand-in (``mock_services.X()``): each call is recorded in ``calls`` and then
answered by the stand-in, unless the test gave an override for that method, by keyword: a value to
return, or a function (sync or async) to call with the same arguments, as Backstage's
``mockServices.X.mock({method: impl})``. ``factory()`` provides the mock itself to a test backend.

Every mock is declared method by method, so ``mypy`` checks it against its ``kernel.api`` protocol.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from kernel.api import (
    CacheService,
    Database,
    DatabaseService,
    Discovery,
    Health,
    Lifecycle,
    Logger,
    RootConfig,
    ServiceFactory,
    ServiceRef,
    core_services,
)
from kernel.testing.fakes import TOOLKIT, instance_factory

__all__ = [
    "CacheMock",
    "Call",
    "DatabaseMock",
    "DiscoveryMock",
    "HealthMock",
    "LifecycleMock",
    "LoggerMock",
    "Recorder",
    "RootConfigMock",
]


@dataclass(frozen=True)
class Call:
    """One call a mock received."""

    name: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


class Recorder:
    """What every mock shares: the calls it received, its overrides, its factory."""

    ref: ServiceRef[Any]

    def __init__(self, overrides: Mapping[str, Any], calls: list[Call] | None = None) -> None:
        unknown = [name for name in overrides if not callable(getattr(type(self), name, None))]
        if unknown:
            raise TypeError(f"{type(self).__name__} has no method {unknown[0]!r} to override")
        self._overrides = dict(overrides)
        self.calls: list[Call] = [] if calls is None else calls

    def calls_to(self, name: str) -> list[Call]:
        """The calls of method ``name``, in order."""
        return [c for c in self.calls if c.name == name]

    def called_with(self, name: str, *args: Any, **kwargs: Any) -> bool:
        """Whether method ``name`` was called with exactly these arguments."""
        return Call(name, args, kwargs) in self.calls

    def factory(self) -> ServiceFactory:
        """A factory providing this mock (to every plugin of a test backend)."""
        return instance_factory(self.ref, self)

    def _sync(self, name: str, default: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self.calls.append(Call(name, args, kwargs))
        if name not in self._overrides:
            return default(*args, **kwargs)
        override = self._overrides[name]
        return override(*args, **kwargs) if callable(override) else override

    async def _async(self, name: str, default: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        result = self._sync(name, default, *args, **kwargs)
        return await result if inspect.isawaitable(result) else result


class LoggerMock(Recorder):
    """``mock_services.logger.mock()``: every line kept in ``calls`` (children share the list)."""

    ref = core_services.logger

    def __init__(self, fake: Logger, calls: list[Call] | None = None, **overrides: Any) -> None:
        super().__init__(overrides, calls)
        self._fake = fake

    def messages(self, level: str | None = None) -> list[str]:
        """The messages logged (at ``level`` only: ``"info"``, ``"error"``...), in order."""
        levels = {"debug", "info", "warning", "error", "exception"} if level is None else {level}
        return [str(c.args[0]) for c in self.calls if c.name in levels and c.args]

    def debug(self, msg: str, **fields: Any) -> None:
        self._sync("debug", self._fake.debug, msg, **fields)

    def info(self, msg: str, **fields: Any) -> None:
        self._sync("info", self._fake.info, msg, **fields)

    def warning(self, msg: str, **fields: Any) -> None:
        self._sync("warning", self._fake.warning, msg, **fields)

    def error(self, msg: str, **fields: Any) -> None:
        self._sync("error", self._fake.error, msg, **fields)

    def exception(self, msg: str, **fields: Any) -> None:
        self._sync("exception", self._fake.exception, msg, **fields)

    def child(self, **fields: Any) -> Logger:
        self.calls.append(Call("child", (), fields))
        return LoggerMock(self._fake.child(**fields), self.calls, **self._overrides)


class RootConfigMock(Recorder):
    """``mock_services.root_config.mock(data=...)``: reads recorded, answered from ``data``."""

    ref = core_services.root_config

    def __init__(self, fake: RootConfig, **overrides: Any) -> None:
        super().__init__(overrides)
        self._fake = fake

    def get(self, key: str | None = None) -> Any:
        return self._sync("get", self._fake.get, key)

    def get_optional(self, key: str) -> Any:
        return self._sync("get_optional", self._fake.get_optional, key)

    def get_string(self, key: str) -> str:
        return str(self._sync("get_string", self._fake.get_string, key))

    def get_optional_string(self, key: str) -> str | None:
        value = self._sync("get_optional_string", self._fake.get_optional_string, key)
        return None if value is None else str(value)

    def get_number(self, key: str) -> float:
        return float(self._sync("get_number", self._fake.get_number, key))

    def get_optional_number(self, key: str) -> float | None:
        value = self._sync("get_optional_number", self._fake.get_optional_number, key)
        return None if value is None else float(value)

    def get_boolean(self, key: str) -> bool:
        return bool(self._sync("get_boolean", self._fake.get_boolean, key))

    def get_optional_boolean(self, key: str) -> bool | None:
        value = self._sync("get_optional_boolean", self._fake.get_optional_boolean, key)
        return None if value is None else bool(value)

    def has(self, key: str) -> bool:
        return bool(self._sync("has", self._fake.has, key))

    def keys(self) -> list[str]:
        return list(self._sync("keys", self._fake.keys))

    def get_string_list(self, key: str) -> list[str]:
        return list(self._sync("get_string_list", self._fake.get_string_list, key))

    def get_optional_string_list(self, key: str) -> list[str] | None:
        value = self._sync("get_optional_string_list", self._fake.get_optional_string_list, key)
        return None if value is None else list(value)

    def source(self, key: str | None = None) -> str | None:
        value = self._sync("source", self._fake.source, key)
        return None if value is None else str(value)

    def subscribe(self, callback: Callable[[Any], Any]) -> Callable[[], None]:
        unsubscribe: Callable[[], None] = self._sync("subscribe", self._fake.subscribe, callback)
        return unsubscribe


class CacheMock(Recorder):
    """``mock_services.cache.mock()``: a memory cache whose calls are recorded."""

    ref = core_services.cache

    def __init__(self, fake: CacheService, **overrides: Any) -> None:
        super().__init__(overrides)
        self._fake = fake

    async def get(self, key: str) -> Any | None:
        return await self._async("get", self._fake.get, key)

    async def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        await self._async("set", self._fake.set, key, value, ttl=ttl)

    async def delete(self, key: str) -> None:
        await self._async("delete", self._fake.delete, key)

    def with_options(self, *, default_ttl: float | None = None) -> CacheService:
        result: CacheService = self._sync("with_options", self._fake.with_options, default_ttl=default_ttl)
        return result


class DatabaseMock(Recorder):
    """``mock_services.database.mock()``: an in-memory SQLite database whose calls are recorded."""

    ref = core_services.database

    def __init__(self, fake: DatabaseService, **overrides: Any) -> None:
        super().__init__(overrides)
        self._fake = fake

    async def get_client(self) -> Database:
        result: Database = await self._async("get_client", self._fake.get_client)
        return result

    async def migrate(self, migrations: Sequence[tuple[str, str]]) -> list[str]:
        return list(await self._async("migrate", self._fake.migrate, migrations))

    async def close(self) -> None:
        """Close the database underneath (not recorded); a backend given this mock does it at shutdown."""
        close = getattr(self._fake, "close", None)
        if close is not None:
            await close()

    def factory(self) -> ServiceFactory:
        def make(lifecycle: Lifecycle) -> DatabaseMock:
            lifecycle.add_shutdown_hook(self.close, label="close the mock database")
            return self

        return ServiceFactory(self.ref, make, {"lifecycle": core_services.lifecycle}, TOOLKIT)


class DiscoveryMock(Recorder):
    """``mock_services.discovery.mock()``: ``http://localhost:0/api/<pluginId>`` unless overridden."""

    ref = core_services.discovery

    def __init__(self, fake: Discovery, **overrides: Any) -> None:
        super().__init__(overrides)
        self._fake = fake

    async def get_base_url(self, plugin_id: str) -> str:
        return str(await self._async("get_base_url", self._fake.get_base_url, plugin_id))

    async def get_external_base_url(self, plugin_id: str) -> str:
        return str(await self._async("get_external_base_url", self._fake.get_external_base_url, plugin_id))


class LifecycleMock(Recorder):
    """``mock_services.lifecycle.mock()``: hooks recorded, and run by the backend (``run``) as usual."""

    ref = core_services.lifecycle

    def __init__(self, fake: Any, **overrides: Any) -> None:
        super().__init__(overrides)
        self._fake = fake

    def add_startup_hook(self, hook: Callable[[], Any], *, label: str = "") -> None:
        self._sync("add_startup_hook", self._fake.add_startup_hook, hook, label=label)

    def add_before_shutdown_hook(self, hook: Callable[[], Any], *, label: str = "") -> None:
        self._sync("add_before_shutdown_hook", self._fake.add_before_shutdown_hook, hook, label=label)

    def add_shutdown_hook(self, hook: Callable[[], Any], *, label: str = "") -> None:
        self._sync("add_shutdown_hook", self._fake.add_shutdown_hook, hook, label=label)

    async def run(self, phase: Literal["startup", "before_shutdown", "shutdown"]) -> None:
        """Run the hooks of ``phase`` (what the kernel calls at start-up and shutdown)."""
        await self._async("run", self._fake.run, phase)


class HealthMock(Recorder):
    """``mock_services.health.mock()``: readiness checks recorded, and run on ``failing_checks``."""

    ref = core_services.health

    def __init__(self, fake: Health, **overrides: Any) -> None:
        super().__init__(overrides)
        self._fake = fake

    def add_readiness_check(self, check: Callable[[], Awaitable[bool]], *, label: str = "") -> None:
        self._sync("add_readiness_check", self._fake.add_readiness_check, check, label=label)

    async def failing_checks(self) -> list[str]:
        return list(await self._async("failing_checks", self._fake.failing_checks))


if TYPE_CHECKING:  # mypy checks each mock against its protocol

    def _logger(m: LoggerMock) -> Logger:
        return m

    def _config(m: RootConfigMock) -> RootConfig:
        return m

    def _cache(m: CacheMock) -> CacheService:
        return m

    def _database(m: DatabaseMock) -> DatabaseService:
        return m

    def _discovery(m: DiscoveryMock) -> Discovery:
        return m

    def _lifecycle(m: LifecycleMock) -> Lifecycle:
        return m

    def _health(m: HealthMock) -> Health:
        return m

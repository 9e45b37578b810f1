"""``mock_services``: for every core service, a stand-in, a factory and a recording mock.

As Backstage's ``mockServices``, three ways to use each ``mock_services.<name>``:

- ``mock_services.cache()``: a working instance (here the real memory cache), for unit tests;
- ``mock_services.cache.factory()``: a ``ServiceFactory`` for ``start_test_backend(services=[...])``;
- ``mock_services.cache.mock(get=...)``: a recording mock (``kernel.testing.recording``) whose methods
  answer like the stand-in unless overridden; ``mock.calls`` lists what it received; pass the mock
  itself (or ``mock.factory()``) in ``services=`` to give it to every plugin of a backend.

Names: ``root_config(data=...)``, ``root_logger``, ``root_lifecycle``, ``logger``, ``lifecycle``,
``cache``, ``database``, ``discovery``, ``scheduler``, ``health``, ``auth``, ``http_auth``,
``user_info``, ``identity``, ``permissions(result="ALLOW"|"DENY")``, ``plugin_client``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from kernel.api import (
    DatabaseService,
    Lifecycle,
    PluginMetadata,
    ServiceFactory,
    ServiceRef,
    core_services,
)
from kernel.testing.fakes import (
    TOOLKIT,
    MockAuth,
    MockHttpAuth,
    MockIdentity,
    MockPermissions,
    MockRootConfig,
    MockScheduler,
    MockUserInfo,
    Result,
    instance_factory,
)
from kernel.testing.recording import (
    CacheMock,
    DatabaseMock,
    DiscoveryMock,
    HealthMock,
    LifecycleMock,
    LoggerMock,
    RootConfigMock,
)
from kernel.testing.recording_auth import (
    AuthMock,
    HttpAuthMock,
    IdentityMock,
    PermissionsMock,
    PluginClientMock,
    SchedulerMock,
    UserInfoMock,
)
from kernel_services.auth.factories import FACTORIES as AUTH_FACTORIES
from kernel_services.cache import FACTORIES as CACHE_FACTORIES
from kernel_services.cache import MemoryStore, PluginCache
from kernel_services.database import DatabaseSettings, PluginDatabase
from kernel_services.discovery import HostDiscovery
from kernel_services.health import FACTORIES as HEALTH_FACTORIES
from kernel_services.health import ReadinessChecks
from kernel_services.lifecycle import FACTORIES as LIFECYCLE_FACTORIES
from kernel_services.lifecycle import LifecycleHooks
from kernel_services.logger import FACTORIES as LOGGER_FACTORIES
from kernel_services.logger import PluginLogger, plugin_logger
from kernel_services.permissions import FACTORIES as PERMISSION_FACTORIES

__all__ = ["default_factories", "mock_services"]

#: where the mock discovery points: a port nothing listens on, so no request leaves the test by accident
MOCK_BASE_URL = "http://localhost:0/api"


def _real(factories: Sequence[ServiceFactory], ref: ServiceRef[Any]) -> ServiceFactory:
    return next(f for f in factories if f.service.id == ref.id)


class _RootConfig:
    def __call__(self, data: Mapping[str, Any] | None = None) -> MockRootConfig:
        return MockRootConfig(data)

    def factory(self, data: Mapping[str, Any] | None = None) -> ServiceFactory:
        return MockRootConfig(data).factory()

    def mock(self, data: Mapping[str, Any] | None = None, **overrides: Any) -> RootConfigMock:
        return RootConfigMock(MockRootConfig(data), **overrides)


class _RootLogger:
    def __call__(self) -> PluginLogger:
        return PluginLogger(logging.getLogger("kernel"), {"plugin": "root"})

    def factory(self) -> ServiceFactory:
        return _real(LOGGER_FACTORIES, core_services.root_logger)

    def mock(self, **overrides: Any) -> LoggerMock:
        mock = LoggerMock(self(), **overrides)
        mock.ref = core_services.root_logger
        return mock


class _Logger:
    def __call__(self, plugin_id: str = "test") -> PluginLogger:
        return plugin_logger(plugin_id)

    def factory(self) -> ServiceFactory:
        return _real(LOGGER_FACTORIES, core_services.logger)

    def mock(self, **overrides: Any) -> LoggerMock:
        return LoggerMock(self(), **overrides)


class _Lifecycle:
    def __init__(self, ref: ServiceRef[Any]) -> None:
        self._ref = ref

    def __call__(self) -> LifecycleHooks:
        return LifecycleHooks(plugin_logger("test"), "test")

    def factory(self) -> ServiceFactory:
        return _real(LIFECYCLE_FACTORIES, self._ref)

    def mock(self, **overrides: Any) -> LifecycleMock:
        mock = LifecycleMock(self(), **overrides)
        mock.ref = self._ref
        return mock


class _Cache:
    def __call__(self, plugin_id: str = "test") -> PluginCache:
        return PluginCache(MemoryStore(), plugin_id)

    def factory(self) -> ServiceFactory:
        """A memory cache for the backend, each plugin in its own namespace (as the real one)."""
        store = MemoryStore()

        def make(meta: PluginMetadata) -> PluginCache:
            return PluginCache(store, meta.plugin_id)

        return ServiceFactory(core_services.cache, make, {"meta": core_services.plugin_metadata}, TOOLKIT)

    def real_factory(self) -> ServiceFactory:
        """The installed default (``backend.cache`` of the config: memory or Redis)."""
        return _real(CACHE_FACTORIES, core_services.cache)

    def mock(self, **overrides: Any) -> CacheMock:
        return CacheMock(self(), **overrides)


class _Database:
    def __call__(self, plugin_id: str = "test") -> PluginDatabase:
        """An SQLite database in memory (the real engine; one connection)."""
        return PluginDatabase(DatabaseSettings("sqlite", ":memory:"), plugin_id)

    def factory(self, database: DatabaseService | Any | None = None) -> ServiceFactory:
        """Each plugin its own in-memory SQLite database; or ``database`` (a ``DatabaseService``, or a
        ``TestDatabase`` of ``test_databases``) for every plugin, as Backstage's ``factory({knex})``."""
        if database is not None:
            return instance_factory(core_services.database, getattr(database, "service", database))

        def make(meta: PluginMetadata, lifecycle: Lifecycle) -> PluginDatabase:
            service = self(meta.plugin_id)
            lifecycle.add_shutdown_hook(service.close, label="close the test database")
            return service

        deps: dict[str, ServiceRef[Any]] = {"meta": core_services.plugin_metadata, "lifecycle": core_services.lifecycle}
        return ServiceFactory(core_services.database, make, deps, TOOLKIT)

    def mock(self, **overrides: Any) -> DatabaseMock:
        return DatabaseMock(self(), **overrides)


class _Discovery:
    def __call__(self) -> HostDiscovery:
        return HostDiscovery(MOCK_BASE_URL, MOCK_BASE_URL)

    def factory(self) -> ServiceFactory:
        return instance_factory(core_services.discovery, self())

    def mock(self, **overrides: Any) -> DiscoveryMock:
        return DiscoveryMock(self(), **overrides)


class _Scheduler:
    def __call__(self) -> MockScheduler:
        return MockScheduler()

    def factory(self, *, run_on_startup: bool = False) -> ServiceFactory:
        """A ``MockScheduler`` per plugin (reach it with ``backend.service(plugin_id, core_services.scheduler)``);
        to hold one yourself: ``scheduler = mock_services.scheduler()`` and ``scheduler.factory()``."""
        if run_on_startup:
            return ServiceFactory(
                core_services.scheduler,
                lambda lifecycle: MockScheduler().factory(run_on_startup=True).factory(lifecycle),
                {"lifecycle": core_services.lifecycle},
                TOOLKIT,
            )
        return ServiceFactory(core_services.scheduler, MockScheduler, {}, TOOLKIT)

    def mock(self, **overrides: Any) -> SchedulerMock:
        return SchedulerMock(MockScheduler(), **overrides)


class _Health:
    def __call__(self) -> ReadinessChecks:
        return ReadinessChecks(plugin_logger("test"))

    def factory(self) -> ServiceFactory:
        return _real(HEALTH_FACTORIES, core_services.health)

    def mock(self, **overrides: Any) -> HealthMock:
        return HealthMock(self(), **overrides)


class _Auth:
    def __call__(self, plugin_id: str = "test") -> MockAuth:
        return MockAuth(plugin_id)

    def factory(self) -> ServiceFactory:
        def make(meta: PluginMetadata) -> MockAuth:
            return MockAuth(meta.plugin_id)

        return ServiceFactory(core_services.auth, make, {"meta": core_services.plugin_metadata}, TOOLKIT)

    def mock(self, **overrides: Any) -> AuthMock:
        return AuthMock(self(), **overrides)


class _HttpAuth:
    def __call__(self, plugin_id: str = "test") -> MockHttpAuth:
        return MockHttpAuth(plugin_id)

    def factory(self) -> ServiceFactory:
        def make(meta: PluginMetadata) -> MockHttpAuth:
            return MockHttpAuth(meta.plugin_id)

        return ServiceFactory(core_services.http_auth, make, {"meta": core_services.plugin_metadata}, TOOLKIT)

    def mock(self, **overrides: Any) -> HttpAuthMock:
        return HttpAuthMock(self(), **overrides)


class _UserInfo:
    def __call__(
        self, user_entity_ref: str | None = None, ownership_entity_refs: Sequence[str] | None = None
    ) -> MockUserInfo:
        return MockUserInfo(user_entity_ref, ownership_entity_refs)

    def factory(
        self, user_entity_ref: str | None = None, ownership_entity_refs: Sequence[str] | None = None
    ) -> ServiceFactory:
        return self(user_entity_ref, ownership_entity_refs).factory()

    def mock(self, **overrides: Any) -> UserInfoMock:
        return UserInfoMock(self(), **overrides)


class _Identity:
    def __call__(self) -> MockIdentity:
        return MockIdentity()

    def factory(self) -> ServiceFactory:
        return MockIdentity().factory()

    def mock(self, **overrides: Any) -> IdentityMock:
        return IdentityMock(self(), **overrides)


class _Permissions:
    def __call__(self, result: Result = "ALLOW") -> MockPermissions:
        return MockPermissions(result)

    def factory(self, result: Result | None = None) -> ServiceFactory:
        """``MockPermissions(result)``; without ``result``, the real service (``permission.enabled``, policy hooks)."""
        if result is None:
            return _real(PERMISSION_FACTORIES, core_services.permissions)
        return MockPermissions(result).factory()

    def mock(self, result: Result = "ALLOW", **overrides: Any) -> PermissionsMock:
        return PermissionsMock(MockPermissions(result), **overrides)


class _PluginClient:
    def __call__(self, **overrides: Any) -> PluginClientMock:
        return PluginClientMock(**overrides)

    def factory(self) -> ServiceFactory:
        """The real client (HTTP through discovery): in process mode, calls between plugins work."""
        return _real(AUTH_FACTORIES, core_services.plugin_client)

    def mock(self, **overrides: Any) -> PluginClientMock:
        return PluginClientMock(**overrides)


class _MockServices:
    root_config = _RootConfig()
    root_logger = _RootLogger()
    root_lifecycle = _Lifecycle(core_services.root_lifecycle)
    logger = _Logger()
    lifecycle = _Lifecycle(core_services.lifecycle)
    cache = _Cache()
    database = _Database()
    discovery = _Discovery()
    scheduler = _Scheduler()
    health = _Health()
    auth = _Auth()
    http_auth = _HttpAuth()
    user_info = _UserInfo()
    identity = _Identity()
    permissions = _Permissions()
    plugin_client = _PluginClient()


mock_services = _MockServices()


def default_factories() -> list[ServiceFactory]:
    """What ``start_test_backend`` uses in place of the installed defaults (the rest are the real ones).

    As Backstage's test backend: mock tokens (``auth``, ``http_auth``, ``user_info``, ``identity``), a database in
    memory per plugin, a memory cache, a discovery that points nowhere, a scheduler run on demand.
    """
    s = mock_services
    return [
        s.auth.factory(),
        s.http_auth.factory(),
        s.user_info.factory(),
        s.identity.factory(),
        s.database.factory(),
        s.cache.factory(),
        s.discovery.factory(),
        s.scheduler.factory(),
    ]

"""``start_test_backend``: the plugins under test, their real routes behind the real gateway, in one call.

In the test's own process by default (``mode="in-process"``): each plugin starts with the worker's own
boot (``kernel.worker.boot.start_plugin``: its service container, modules, init, router) and is served
by the gateway's own classes (``ApiDispatcher``: paths, auth policies and credentials;
``ErrorMiddleware``: the error shape; the root routes: health, instance metadata) through
``kernel.gateway.local.LocalWorkers``, which passes the protocol's messages in memory instead of over
ZeroMQ. Mock tokens (``mock_credentials``) are verified by the gateway like any other token, and static
external-access tokens of the config too. ``backend.client`` is an ``httpx.AsyncClient`` on it.

``mode="process"``: the same plugins in a real ``kernel serve`` (``kernel.testing.process_backend``).

Services, as Backstage's test backend: the kernel's own (``services/``) on the given config, except
``auth``, ``http_auth``, ``user_info`` (mock tokens), ``database`` (SQLite in memory per plugin),
``cache`` (memory), ``discovery`` (pointing nowhere) and ``scheduler`` (tasks run on demand), which
``kernel.testing.mocks.default_factories`` provides; a feature that is a hook module providing
services overrides those; ``services=[...]`` overrides everything.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from functools import partial
from importlib.metadata import entry_points
from types import TracebackType
from typing import Any, Literal

import httpx

from kernel.api import ServiceFactory, ServiceRef
from kernel.config import validate_plugin_config
from kernel.container import check_dependencies
from kernel.core_services import RootConfig, core_services
from kernel.errors import BootError
from kernel.gateway.app import GatewayState, build_app
from kernel.gateway.auth import Authenticator
from kernel.gateway.local import LocalWorkers
from kernel.gateway.routing import ApiDispatcher
from kernel.hooktypes import CredentialVerifier
from kernel.modules import extension_point_problems
from kernel.plugin import BackendModule, BackendPlugin
from kernel.registry import (
    ENTRY_POINT_GROUP,
    HOOK_NAMES,
    KERNEL_DISTRIBUTION,
    PRESET_SERVICES,
    collect_factories,
    ep_key,
    in_registration_order,
    load_registry,
)
from kernel.settings import read_settings
from kernel.testing.credentials import MockCredentialVerifier
from kernel.testing.fakes import MockRootConfig, instance_factory
from kernel.testing.mocks import default_factories
from kernel.worker.boot import BootedPlugin, start_plugin
from kernel.worker.dispatch import Dispatcher

__all__ = ["Feature", "InProcessBackend", "ServiceLike", "TestBackend", "start_test_backend"]

#: a plugin, a module, or a hook module (a policy, services, verifiers...)
Feature = BackendPlugin | BackendModule | object
#: a ``ServiceFactory``, ``(ref, instance)``, or anything with ``factory()`` (mocks, test databases, ...)
ServiceLike = ServiceFactory | tuple[ServiceRef[Any], Any] | object
BASE_URL = "http://testserver"


class TestBackend:
    """A running test backend: ``client`` (``httpx.AsyncClient`` on ``url``), ``stop()``."""

    __test__ = False  # not a pytest test class
    mode: Literal["in-process", "process"]

    def __init__(self, url: str, client: httpx.AsyncClient) -> None:
        self.url = url
        self.client = client

    async def stop(self) -> None:
        await self.client.aclose()

    async def __aenter__(self) -> TestBackend:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


class InProcessBackend(TestBackend):
    """The in-process backend: ``app`` (the gateway's ASGI app), ``config``, ``service(plugin_id, ref)``."""

    mode: Literal["in-process", "process"] = "in-process"

    def __init__(self, app: Any, pool: LocalWorkers, config: RootConfig) -> None:
        super().__init__(BASE_URL, httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL))
        self.app = app
        self.pool = pool
        self.config = config
        self.plugins: dict[str, tuple[BootedPlugin, Dispatcher]] = {}
        self._stopped = False

    async def service(self, plugin_id: str, ref: ServiceRef[Any]) -> Any:
        """The instance of service ``ref`` that plugin ``plugin_id`` got (or gets now)."""
        return await self.plugins[plugin_id][0].container.get(ref)

    async def stop(self) -> None:
        """Stop as a worker does: refuse new requests, drain, ``before_shutdown`` then ``shutdown`` hooks."""
        if self._stopped:
            return
        self._stopped = True
        self.pool.close()
        try:
            for booted, dispatcher in reversed(list(self.plugins.values())):
                await dispatcher.drain(1.0)
                await booted.lifecycle("before_shutdown")
                await booted.lifecycle("shutdown")
        finally:
            await self.client.aclose()


class _Starting:
    """What ``start_test_backend`` returns: ``await`` it, or ``async with`` it (stopped on exit)."""

    def __init__(self, start: Any) -> None:
        self._start = start
        self._backend: TestBackend | None = None

    def __await__(self) -> Generator[Any, None, TestBackend]:
        return self._start().__await__()  # type: ignore[no-any-return]

    async def __aenter__(self) -> TestBackend:
        self._backend = await self._start()
        return self._backend

    async def __aexit__(self, *exc: object) -> None:
        if self._backend is not None:
            await self._backend.stop()


def start_test_backend(
    features: Sequence[Feature] = (),
    *,
    services: Sequence[ServiceLike] = (),
    config: Mapping[str, Any] | None = None,
    mode: Literal["in-process", "process"] = "in-process",
    dev: bool = False,
    timeout: float = 30.0,
) -> _Starting:
    """Start ``features`` behind the gateway; ``async with start_test_backend([plugin]) as backend: ...``.

    ``config``: the app-config (a dict). ``dev``: development mode (error bodies carry a ``stack``).
    ``mode="process"``: a real ``kernel serve`` (``timeout``: seconds to get ready); see the module doc.
    """
    if mode == "process":
        from kernel.testing.process_backend import start_process

        return _Starting(partial(start_process, list(features), list(services), config, dev, timeout))
    if mode != "in-process":
        raise ValueError(f"mode must be 'in-process' or 'process', not {mode!r}")
    return _Starting(partial(_start_in_process, list(features), list(services), config, dev))


def split_features(
    features: Sequence[Feature],
) -> tuple[list[BackendPlugin], dict[str, list[BackendModule]], list[object]]:
    """Plugins, modules by plugin id, and hook modules; anything else is a ``TypeError``."""
    plugins: list[BackendPlugin] = []
    modules: dict[str, list[BackendModule]] = {}
    providers: list[object] = []
    for feature in features:
        if isinstance(feature, BackendPlugin):
            plugins.append(feature)
        elif isinstance(feature, BackendModule):
            modules.setdefault(feature.plugin_id, []).append(feature)
        elif any(callable(getattr(feature, name, None)) for name in HOOK_NAMES):
            providers.append(feature)
        else:
            raise TypeError(f"{feature!r} is neither a plugin, a module nor a module implementing kernel hooks")
    ids = [p.id for p in plugins]
    if len(set(ids)) != len(ids):
        raise BootError(f"duplicate plugin id among the features: {ids}")
    for plugin_id in modules:
        if plugin_id not in ids:
            raise BootError(f"a module extends plugin '{plugin_id}', which is not among the features")
    return plugins, modules, providers


def factory_of(item: ServiceLike) -> ServiceFactory:
    """A ``ServiceFactory`` from what ``services=`` accepts."""
    if isinstance(item, ServiceFactory):
        return item
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], ServiceRef):
        return instance_factory(item[0], item[1])
    make = getattr(item, "factory", None)
    made = make() if callable(make) else None
    if isinstance(made, ServiceFactory):
        return made
    raise TypeError(f"services: {item!r} is not a ServiceFactory, a (ref, instance) pair, nor has factory()")


def kernel_providers() -> list[str]:
    """The entry points of the kernel's own features (services, root routes, static tokens...)."""
    return [
        ep_key(ep)
        for ep in entry_points(group=ENTRY_POINT_GROUP)
        if ep.dist is not None and ep.dist.name == KERNEL_DISTRIBUTION
    ]


async def _root_config(given: list[ServiceFactory], config: Mapping[str, Any] | None) -> RootConfig:
    ours = [f for f in given if f.service.id == core_services.root_config.id]
    if not ours:
        return MockRootConfig(config)
    if config is not None:
        raise TypeError("give config= or a root_config service, not both")
    root: RootConfig = await ours[-1].create()
    return root


def _check(
    plugins: list[BackendPlugin],
    modules: dict[str, list[BackendModule]],
    factories: Mapping[str, ServiceFactory],
    config: RootConfig,
) -> None:
    """The checks of ``kernel serve`` and the worker, before anything starts: each is a ``BootError``."""
    consumers: list[tuple[str, Mapping[str, ServiceRef[Any]]]] = []
    features: list[BackendPlugin | BackendModule] = [*plugins, *(m for ms in modules.values() for m in ms)]
    for feature in features:
        owner = feature.id if isinstance(feature, BackendPlugin) else feature.plugin_id
        consumers.append((owner, {k: v for k, v in feature.deps.items() if isinstance(v, ServiceRef)}))
    problems = check_dependencies(factories, consumers, PRESET_SERVICES)
    for plugin in plugins:
        problems.extend(extension_point_problems(plugin, modules.get(plugin.id, [])).values())
        if plugin.config_schema is not None:
            problems.extend(validate_plugin_config(config, plugin.id, plugin.config_schema))
    if problems:
        raise BootError("; ".join(problems))


async def _start_in_process(
    features: list[Feature], services: list[ServiceLike], config: Mapping[str, Any] | None, dev: bool
) -> InProcessBackend:
    plugins, modules, providers = split_features(features)
    given = [factory_of(s) for s in services]
    root_config = await _root_config(given, config)
    settings = read_settings(root_config)
    reg = load_registry(only=kernel_providers(), services=False)
    manager = reg.manager
    assert manager is not None
    names = []
    for i, provider in enumerate(providers):
        names.append(f"test-feature-{i}:{getattr(provider, '__name__', type(provider).__name__)}")
        manager.register(provider, name=names[-1])
    factories = collect_factories(manager)
    for factory in default_factories():
        current = factories.get(factory.service.id)
        if current is None or current.provider not in names:
            factories[factory.service.id] = factory
    factories.update({f.service.id: f for f in given if f.service.id != core_services.root_config.id})
    _check(plugins, modules, factories, root_config)

    def verifiers(cfg: Any) -> list[CredentialVerifier]:
        return [MockCredentialVerifier(), *in_registration_order(manager.hook.kernel_credential_verifiers(config=cfg))]

    auth = Authenticator(verifiers(root_config))
    root_config.subscribe(lambda new: auth.replace_verifiers(verifiers(new)))
    pool = LocalWorkers()
    g = settings.gateway
    api = ApiDispatcher(pool, auth, mount=g.mount, timeout=g.request_timeout, max_body=g.max_request_body_size)
    root_routes = manager.hook.kernel_root_routes(gateway=GatewayState(pool, api), config=root_config)
    routes = in_registration_order(root_routes)
    backend = InProcessBackend(build_app(api, routes, dev=dev), pool, root_config)
    try:
        for plugin in plugins:
            booted = await start_plugin(plugin, modules.get(plugin.id, []), factories, manager, root_config)
            dispatcher = Dispatcher(booted.app, plugin.id, f"{g.mount.rstrip('/')}/{plugin.id}", dev=dev)
            backend.plugins[plugin.id] = (booted, dispatcher)
            pool.add(plugin.id, dispatcher, booted.router.policies)
            booted.router.on_change = partial(pool.set_policies, plugin.id)
    except BaseException:
        await backend.stop()
        raise
    pool.start()
    return backend

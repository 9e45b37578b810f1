"""The in-process test backend: the production gateway, composed as ``kernel serve`` composes it, in the test's process.

Each plugin starts with the worker's own boot (``kernel.worker.boot.start_plugin``: its service
container, modules, init, router) and is served by the gateway ``kernel.gateway.compose`` builds from
the config's settings: the limits, the whole HTTP edge (CORS, security headers, compression, rate
limit, request ids, access log), the middleware and root routes of installed packages, the dispatcher
with its auth policies, credentials and worker limits. Only the transport differs: the protocol's
messages pass through the event loop (``kernel.gateway.memory_transport``) instead of ZeroMQ, and
there is no supervisor, so ``LocalPlugins`` publishes the worker table itself. Mock tokens
(``mock_credentials``) are verified first, then every verifier of the config.

Services, as Backstage's test backend: the kernel's own (``services/``) on the given config, except
``auth``, ``http_auth``, ``user_info`` (mock tokens), ``database`` (SQLite in memory per plugin),
``cache`` (memory), ``discovery`` (pointing nowhere) and ``scheduler`` (tasks run on demand), which
``kernel.testing.mocks.default_factories`` provides; a feature that is a hook module providing
services overrides those; ``services=[...]`` overrides everything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from importlib.metadata import entry_points
from typing import Any, Literal

import httpx

from kernel import plugin_paths
from kernel.api import ServiceFactory, ServiceRef
from kernel.config import validate_plugin_config
from kernel.container import check_dependencies
from kernel.core_services import RootConfig, core_services
from kernel.errors import BootError
from kernel.gateway.compose import ComposedGateway, compose_gateway
from kernel.gateway.links import WorkerLinks
from kernel.gateway.memory_transport import LocalWorker, MemoryTransport
from kernel.gateway.table import RoutingTable
from kernel.modules import extension_point_problems
from kernel.plugin import BackendModule, BackendPlugin
from kernel.protocol import AuthPolicy, PluginState, WorkerTable
from kernel.registry import (
    ENTRY_POINT_GROUP,
    KERNEL_DISTRIBUTION,
    PRESET_SERVICES,
    collect_factories,
    ep_key,
    load_registry,
)
from kernel.settings import read_settings
from kernel.testing.credentials import MockCredentialVerifier
from kernel.testing.fakes import MockRootConfig
from kernel.testing.features import Feature, ServiceLike, TestBackend, factory_of, split_features
from kernel.testing.mocks import default_factories
from kernel.testing.websockets import WebSocketSession
from kernel.worker.boot import BootedPlugin, start_plugin
from kernel.worker.dispatch import Dispatcher

__all__ = ["InProcessBackend", "LocalPlugins", "start_in_process"]

BASE_URL = "http://testserver"


class LocalPlugins:
    """The supervisor's part in the test backend: one ready worker per plugin, published as the worker table."""

    def __init__(self, links: WorkerLinks, transport: MemoryTransport) -> None:
        self._links = links
        self._transport = transport
        self._plugins: dict[str, PluginState] = {}
        self._accepting = False
        self._generation = 0

    def add(self, plugin_id: str, worker: LocalWorker, policies: Sequence[AuthPolicy]) -> None:
        """Serve ``plugin_id`` with ``worker``, behind ``policies``."""
        wid = f"{plugin_id}-local"
        self._transport.add(wid, worker)
        self._plugins[plugin_id] = PluginState(plugin_id, "ready", list(policies), [wid], worker_states={wid: "ready"})
        self._publish()

    def set_policies(self, plugin_id: str, policies: Sequence[AuthPolicy]) -> None:
        """The plugin changed its auth policies (a worker's ``Policies`` message, republished at once)."""
        state = self._plugins[plugin_id]
        self._plugins[plugin_id] = PluginState(
            state.id, state.state, list(policies), state.workers, worker_states=state.worker_states
        )
        self._publish()

    def accept(self, accepting: bool) -> None:
        """Take requests (``True``), or refuse new ones with 503 as a gateway that is shutting down."""
        self._accepting = accepting
        self._publish()

    def _publish(self) -> None:
        self._generation += 1
        self._links.apply(WorkerTable(self._generation, list(self._plugins.values()), self._accepting))


class InProcessBackend(TestBackend):
    """The in-process backend: ``app`` (the gateway's ASGI app), ``config``, ``service(plugin_id, ref)``."""

    mode: Literal["in-process", "process"] = "in-process"

    def __init__(self, gateway: ComposedGateway, local: LocalPlugins, config: RootConfig) -> None:
        app = gateway.app
        super().__init__(BASE_URL, httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL))
        self.app = app
        self.gateway = gateway
        self.local = local
        self.config = config
        self.plugins: dict[str, tuple[BootedPlugin, Dispatcher]] = {}
        self._stopped = False

    def websocket_connect(
        self, path: str, *, headers: Mapping[str, str] | None = None, subprotocols: Sequence[str] = ()
    ) -> WebSocketSession:
        """A WebSocket to ``path`` through the gateway: ``async with backend.websocket_connect(p) as ws``."""
        return WebSocketSession(self.app, BASE_URL + path, headers=headers, subprotocols=subprotocols)

    async def service(self, plugin_id: str, ref: ServiceRef[Any]) -> Any:
        """The instance of service ``ref`` that plugin ``plugin_id`` got (or gets now)."""
        return await self.plugins[plugin_id][0].container.get(ref)

    async def stop(self) -> None:
        """Stop as a kernel does: ``before_shutdown`` hooks while requests still flow, then refuse new
        requests, drain, and the ``shutdown`` hooks."""
        if self._stopped:
            return
        self._stopped = True
        for booted, _dispatcher in reversed(list(self.plugins.values())):
            await booted.lifecycle("before_shutdown")
        self.local.accept(False)
        try:
            for booted, dispatcher in reversed(list(self.plugins.values())):
                await dispatcher.drain(1.0)
                await booted.lifecycle("shutdown")
        finally:
            plugin_paths.choose(None)  # a later backend or kernel code of this process starts from the default
            await self.gateway.close()
            await self.client.aclose()


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
    for feature in features:
        if feature.init_fn is None:  # as the registry says of an installed one
            kind = "plugin" if isinstance(feature, BackendPlugin) else "module"
            problems.append(f"{feature.label} declares no init (use @{kind}.init)")
    for plugin in plugins:
        problems.extend(extension_point_problems(plugin, modules.get(plugin.id, [])).values())
        if plugin.config_schema is not None:
            problems.extend(validate_plugin_config(config, plugin.id, plugin.config_schema))
    if problems:
        raise BootError("; ".join(problems))


async def start_in_process(
    features: list[Feature], services: list[ServiceLike], config: Mapping[str, Any] | None, dev: bool
) -> InProcessBackend:
    """Boot ``features`` in this process behind the composed gateway (see the module doc)."""
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

    plugin_paths.choose_from(manager)  # the features' kernel_http_router_options too
    transport = MemoryTransport()
    links = WorkerLinks(RoutingTable(), transport)
    gateway = compose_gateway(
        settings, manager.hook, root_config, links, name="gateway-local", dev=dev,
        first_verifiers=[MockCredentialVerifier()],
    )  # fmt: skip
    local = LocalPlugins(links, transport)
    backend = InProcessBackend(gateway, local, root_config)
    gateway.start()
    try:
        for plugin in plugins:
            booted = await start_plugin(plugin, modules.get(plugin.id, []), factories, manager, root_config)
            path = plugin_paths.path_of(plugin.id, settings.gateway.mount)
            dispatcher = Dispatcher(booted.app, plugin.id, path, dev=dev)
            backend.plugins[plugin.id] = (booted, dispatcher)
            local.add(plugin.id, dispatcher, booted.router.policies)
            booted.router.on_change = partial(local.set_policies, plugin.id)
    except BaseException:
        await backend.stop()
        raise
    local.accept(True)
    return backend

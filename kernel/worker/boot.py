"""Booting one plugin in its worker: load it, build its services, run its init, build its app."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import pluggy

from kernel.container import ServiceContainer
from kernel.core_services import RootConfig, core_services
from kernel.errors import BootError
from kernel.plugin import BackendModule, BackendPlugin, ExtensionPoint
from kernel.registry import load_registry
from kernel.service import ServiceFactory, ServiceRef
from kernel.worker.extensions import start_modules
from kernel.worker.router import PluginRouter

log = logging.getLogger("kernel.worker")

#: checks the plugin once it is known (its config schema, logging); returns problems
Prepare = Callable[[RootConfig, BackendPlugin], list[str]]


class _Meta:
    def __init__(self, plugin_id: str) -> None:
        self.plugin_id = plugin_id


class _Hooks:
    """The ``core.rootHooks`` of a worker: the hooks of the packages it loaded."""

    def __init__(self, manager: pluggy.PluginManager) -> None:
        self._manager = manager

    def call(self, hook: str, **kwargs: Any) -> Any:
        return getattr(self._manager.hook, hook)(**kwargs)


class BootedPlugin:
    """A plugin ready to serve: its ASGI app, its router (auth policies) and its services."""

    def __init__(self, app: Any, router: PluginRouter, container: ServiceContainer) -> None:
        self.app = app
        self.router = router
        self.container = container

    async def lifecycle(self, phase: str) -> None:
        """Run the plugin's and the process's lifecycle hooks of ``phase`` (if it asked for them)."""
        for ref in (core_services.lifecycle, core_services.root_lifecycle):
            try:
                hooks = await self.container.get(ref)
            except Exception:  # lifecycle not provided: nothing to run
                continue
            run = getattr(hooks, "run", None)
            if run is not None:
                await run(phase)

    def health(self) -> Any | None:
        """The plugin's ``core.health`` if it asked for it (its readiness checks)."""
        return self.container.cached(core_services.health)


async def boot(
    plugin_id: str,
    entry_points: list[str],
    config: RootConfig,
    prepare: Prepare | None = None,
    module_policy: Callable[[str], str] = lambda module_id: "abort",
) -> BootedPlugin:
    """Load ``plugin_id`` from ``entry_points`` (its own, its modules' and the providers'), then start it.

    ``module_policy(module_id)``: ``continue`` lets that module fail without failing the plugin.
    """
    reg = load_registry(only=entry_points)
    fatal = [f for f in reg.failures if not (f.module and module_policy(f.module) == "continue")]
    if fatal:
        raise BootError("; ".join(str(f) for f in fatal))
    for f in reg.failures:
        if f not in fatal:
            log.error("%s (continuing without it: onPluginModuleBootFailure is 'continue')", f)
    entry = reg.plugins.get(plugin_id)
    if entry is None:
        raise BootError(f"plugin '{plugin_id}' is not installed")
    if prepare is not None:
        problems = prepare(config, entry.plugin)
        if problems:
            raise BootError("; ".join(problems))
    assert reg.manager is not None
    modules = [m.module for m in entry.modules]
    return await start_plugin(entry.plugin, modules, reg.factories, reg.manager, config, module_policy)


async def start_plugin(
    plugin: BackendPlugin,
    modules: Sequence[BackendModule],
    factories: Mapping[str, ServiceFactory],
    manager: pluggy.PluginManager,
    config: RootConfig,
    module_policy: Callable[[str], str] = lambda module_id: "abort",
) -> BootedPlugin:
    """Start a loaded plugin: its services, its modules, its init, its routes; then its startup hooks.

    The worker's boot after loading; also ``kernel.testing.start_test_backend``'s, in the test's process.
    """
    plugin_id = plugin.id
    router = PluginRouter(plugin_id, openapi=plugin.openapi)
    container = ServiceContainer(
        factories,
        plugin_id,
        preset={
            core_services.plugin_metadata.id: _Meta(plugin_id),
            core_services.http_router.id: router,
        },
        root_instances={core_services.root_config.id: config, core_services.root_hooks.id: _Hooks(manager)},
    )
    router.base_url = partial(_external_base_url, container, plugin_id)
    for factory in factories.values():  # services that serve routes of their own, before the plugin's
        if factory.eager and factory.service.scope == "plugin":
            await container.get(factory.service)
    if plugin.init_fn is None:
        raise BootError(
            f"plugin '{plugin_id}' has no init: declare one with @plugin.init(...) where the plugin is created"
        )
    _started, points = await start_modules(plugin, list(modules), container, module_policy)
    services = {k: v for k, v in plugin.deps.items() if isinstance(v, ServiceRef)}
    deps = await container.resolve(services)
    deps.update({k: points[v.id] for k, v in plugin.deps.items() if isinstance(v, ExtensionPoint)})
    result = plugin.init_fn(**deps)
    if asyncio.iscoroutine(result):
        await result
    manager.hook.kernel_register_routes(plugin_id=plugin_id, router=router)
    booted = BootedPlugin(router.build(), router, container)
    await booted.lifecycle("startup")
    return booted


async def _external_base_url(container: ServiceContainer, plugin_id: str) -> str | None:
    """The plugin's base URL for the outside world (its OpenAPI ``servers``), if a discovery service says it."""
    try:
        discovery = await container.get(core_services.discovery)
        url: str = await discovery.get_external_base_url(plugin_id)
        return url
    except Exception:  # no discovery provided, or it cannot say: the document names a relative server
        return None

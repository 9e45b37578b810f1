"""Dependency injection: resolve service refs into instances, checking the graph up front."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from kernel.errors import DependencyError
from kernel.service import ServiceFactory, ServiceRef


def check_dependencies(
    factories: Mapping[str, ServiceFactory],
    consumers: Iterable[tuple[str, Mapping[str, ServiceRef[Any]]]],
    preset: Iterable[str] = (),
) -> list[str]:
    """Problems in the service graph as readable lines; ``consumers`` are (plugin id, deps)."""
    known = set(factories) | set(preset)
    problems: list[str] = []
    for plugin_id, deps in consumers:
        for name, ref in deps.items():
            if ref.id not in known:
                problems.append(
                    f"plugin '{plugin_id}' depends on service '{ref.id}' (as {name!r}), "
                    "which no installed package provides"
                )
    for sid, factory in factories.items():
        for ref in factory.deps.values():
            if ref.id not in known:
                problems.append(
                    f"service '{sid}' (from {factory.provider or 'unknown package'}) depends on "
                    f"'{ref.id}', which no installed package provides"
                )
    problems.extend(_cycles(factories))
    return problems


def _cycles(factories: Mapping[str, ServiceFactory]) -> list[str]:
    found: list[str] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(sid: str, path: list[str]) -> None:
        if state.get(sid) == 2 or sid not in factories:
            return
        if state.get(sid) == 1:
            cycle = [*path[path.index(sid) :], sid]
            providers = sorted({factories[c].provider for c in cycle if factories[c].provider})
            by = f" (provided by {', '.join(providers)})" if providers else ""
            found.append("circular service dependency: " + " -> ".join(cycle) + by)
            return
        state[sid] = 1
        for ref in factories[sid].deps.values():
            visit(ref.id, [*path, sid])
        state[sid] = 2

    for sid in sorted(factories):
        visit(sid, [])
    return found


class ServiceContainer:
    """Instances of services for one plugin in one process; root services are shared."""

    def __init__(
        self,
        factories: Mapping[str, ServiceFactory],
        plugin_id: str,
        preset: Mapping[str, Any] | None = None,
        root_instances: dict[str, Any] | None = None,
    ) -> None:
        self._factories = factories
        self.plugin_id = plugin_id
        self._root = root_instances if root_instances is not None else {}
        self._plugin: dict[str, Any] = dict(preset or {})
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, ref: ServiceRef[Any], _path: tuple[str, ...] = ()) -> Any:
        cache = self._root if ref.scope == "root" else self._plugin
        if ref.id in cache:
            return cache[ref.id]
        if ref.id in self._root:
            return self._root[ref.id]
        if ref.id in _path:
            raise DependencyError("circular service dependency: " + " -> ".join((*_path, ref.id)))
        factory = self._factories.get(ref.id)
        if factory is None:
            raise DependencyError(f"plugin '{self.plugin_id}': no installed package provides service '{ref.id}'")
        lock = self._locks.setdefault(ref.id, asyncio.Lock())
        async with lock:
            if ref.id in cache:
                return cache[ref.id]
            deps = {name: await self.get(dep, (*_path, ref.id)) for name, dep in factory.deps.items()}
            instance = await factory.create(**deps)
            cache[ref.id] = instance
            return instance

    def cached(self, ref: ServiceRef[Any]) -> Any | None:
        """The instance of ``ref`` if something already asked for it, else ``None``."""
        return (self._root if ref.scope == "root" else self._plugin).get(ref.id)

    async def resolve(self, deps: Mapping[str, ServiceRef[Any]]) -> dict[str, Any]:
        return {name: await self.get(ref) for name, ref in deps.items()}

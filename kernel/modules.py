"""The modules of one plugin: which extension points they may use, and the order they start in.

Pure functions over the declarations (``kernel.plugin``), shared by the registry (which
reports problems before anything starts) and the worker's boot (which starts the modules).
The rules are the reference system's: a module may depend only on extension points of its own
plugin (registered by the plugin or by one of its modules); a module that provides an
extension point starts after every module that uses it; a cycle is an error.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kernel.plugin import BackendModule, BackendPlugin, ExtensionPoint, PerStart


def extension_point_problems(
    plugin: BackendPlugin, modules: Sequence[BackendModule], elsewhere: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Module id -> why its extension point dependencies cannot be met (``elsewhere``: point id -> owner plugin)."""
    provided = _provided(plugin, modules)
    problems: dict[str, str] = {}
    own = [ref for ref in plugin.deps.values() if isinstance(ref, ExtensionPoint) and ref.id not in provided]
    if own:
        problems[""] = (
            f"Plugin '{plugin.id}' depends on extension point(s) {', '.join(map(repr, own))} that neither it "
            "nor its modules register: a plugin's init may name only its own extension points"
        )
    for module in modules:
        missing = []
        for ref in module.deps.values():
            if not isinstance(ref, ExtensionPoint) or ref.id in provided:
                continue
            owner = (elsewhere or {}).get(ref.id)
            if owner is not None and owner != plugin.id:
                problems[module.module_id] = (
                    f"Illegal dependency: Module '{module.module_id}' for plugin '{plugin.id}' attempted to depend "
                    f"on extension point '{ref.id}' for plugin '{owner}'. Extension points can only be used "
                    "within their plugin's scope."
                )
                break
            missing.append(repr(ref))
        if missing and module.module_id not in problems:
            problems[module.module_id] = (
                f"Service or extension point dependencies of module '{module.module_id}' for plugin '{plugin.id}' "
                f"are missing for the following ref(s): {', '.join(missing)} (no extension point with that id is "
                f"registered by plugin '{plugin.id}' or its modules)"
            )
    return problems


def start_order(plugin: BackendPlugin, modules: Sequence[BackendModule]) -> list[BackendModule]:
    """The modules in the order they start: users of an extension point before the module providing it.

    Raises ``ValueError`` naming the cycle when modules depend on each other's extension points.
    """
    by_point = {pid: m for m in modules for pid in m.extension_points}
    # a module waits for the modules that use the extension points it provides
    waits_for: dict[str, list[str]] = {m.module_id: [] for m in modules}
    for m in modules:
        for ref in m.deps.values():
            provider = by_point.get(ref.id) if isinstance(ref, ExtensionPoint) else None
            if provider is not None and provider is not m:
                waits_for[provider.module_id].append(m.module_id)
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(mid: str, path: list[str]) -> None:
        if state.get(mid) == "done":
            return
        if state.get(mid) == "visiting":
            cycle = [*path[path.index(mid) :], mid]
            raise ValueError(
                f"Circular dependency detected for modules of plugin '{plugin.id}', "
                + " -> ".join(f"'{c}'" for c in cycle)
            )
        state[mid] = "visiting"
        for other in waits_for[mid]:
            visit(other, [*path, mid])
        state[mid] = "done"
        order.append(mid)

    for m in modules:
        visit(m.module_id, [])
    by_id = {m.module_id: m for m in modules}
    return [by_id[mid] for mid in order]


def extension_points_of(plugin: BackendPlugin, modules: Iterable[BackendModule]) -> dict[str, tuple[str, Any]]:
    """Extension point id -> (who registered it, the implementation), for one plugin and its modules."""
    found: dict[str, tuple[str, Any]] = {}
    for feature in (plugin, *modules):
        for pid, (_point, impl) in feature.extension_points.items():
            if pid in found:
                raise ValueError(
                    f"extension point '{pid}' of plugin '{plugin.id}' is registered by both "
                    f"{found[pid][0]} and {feature.label}"
                )
            found[pid] = (feature.label, impl)
    return found


def _provided(plugin: BackendPlugin, modules: Iterable[BackendModule]) -> set[str]:
    return {pid for feature in (plugin, *modules) for pid in feature.extension_points}


def fresh_implementations(points: Mapping[str, tuple[str, Any]]) -> dict[str, Any]:
    """Extension point id -> the implementation of this start: a factory's new object, or the shared one."""
    return {pid: impl.make() if isinstance(impl, PerStart) else impl for pid, (_label, impl) in points.items()}

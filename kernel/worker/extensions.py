"""Starting a plugin's modules in its worker, before the plugin's own init.

Each module gets its services from the plugin's container and each extension point it asked
for through a gate: the gate passes every use on to the implementation until the modules have
all started, then refuses (a module keeping an extension point to use later gets a clear
``PluginDeclarationError`` instead of changing a plugin that has already started).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from kernel.container import ServiceContainer
from kernel.errors import BootError, PluginDeclarationError
from kernel.modules import extension_points_of, fresh_implementations, start_order
from kernel.plugin import BackendModule, BackendPlugin, ExtensionPoint
from kernel.service import ServiceRef

log = logging.getLogger("kernel.worker")


class _Gate:
    """An extension point's implementation as one module sees it: open while the modules start."""

    __slots__ = ("_impl", "_open", "_point", "_user")

    def __init__(self, impl: Any, point: ExtensionPoint[Any], user: str) -> None:
        object.__setattr__(self, "_impl", impl)
        object.__setattr__(self, "_point", point)
        object.__setattr__(self, "_user", user)
        object.__setattr__(self, "_open", True)

    def close(self) -> None:
        object.__setattr__(self, "_open", False)

    def _target(self) -> Any:
        if not self._open:
            raise PluginDeclarationError(
                f"{self._user} used extension point '{self._point.id}' after the plugin started: "
                "extension points are open only while the modules start (in their init)"
            )
        return self._impl

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._target(), name, value)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._target()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<extension point '{self._point.id}' for {self._user}>"


async def start_modules(
    plugin: BackendPlugin,
    modules: Sequence[BackendModule],
    container: ServiceContainer,
    policy: Callable[[str], str],
) -> tuple[list[BackendModule], dict[str, Any]]:
    """Run the modules' inits in order (``policy(module_id)``: ``abort`` or ``continue`` on failure).

    Returns the started modules, and the extension points' implementations of this start (id ->
    object: a factory's made now, for this start only), which the plugin's own init may ask for.
    """
    try:
        ordered = start_order(plugin, modules)
        points = fresh_implementations(extension_points_of(plugin, modules))
    except ValueError as exc:
        raise BootError(str(exc)) from None
    gates: list[_Gate] = []
    started = []
    for module in ordered:
        deps: dict[str, Any] = {}
        services: dict[str, ServiceRef[Any]] = {}
        for name, ref in module.deps.items():
            if isinstance(ref, ExtensionPoint):
                gate = _Gate(points[ref.id], ref, module.label)
                gates.append(gate)
                deps[name] = gate
            else:
                services[name] = ref
        try:
            deps.update(await container.resolve(services))
            assert module.init_fn is not None
            result = module.init_fn(**deps)
            if asyncio.iscoroutine(result):
                await result
        except Exception as exc:
            cause = f"Module '{module.module_id}' for plugin '{plugin.id}' startup failed; caused by {exc!r}"
            if policy(module.module_id) != "continue":
                raise BootError(cause) from exc
            log.error("%s (continuing without it: onPluginModuleBootFailure is 'continue')", cause)
            continue
        started.append(module)
    for gate in gates:
        gate.close()
    for feature in (plugin, *modules):
        feature.started = True
    return started, points

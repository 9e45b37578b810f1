"""The lifecycle services: startup, before-shutdown and shutdown hooks, each failure logged."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

from kernel.api import Logger, PluginMetadata, core_services, create_service_factory


class LifecycleHooks:
    """A ``kernel.api.Lifecycle``; the kernel runs the hooks, bounded in time."""

    def __init__(self, logger: Logger, owner: str) -> None:
        self._logger = logger
        self._owner = owner
        self._hooks: dict[str, list[tuple[Callable[[], Any], str]]] = {
            "startup": [],
            "before_shutdown": [],
            "shutdown": [],
        }

    def add_startup_hook(self, hook: Callable[[], Any], *, label: str = "") -> None:
        self._hooks["startup"].append((hook, label))

    def add_before_shutdown_hook(self, hook: Callable[[], Any], *, label: str = "") -> None:
        self._hooks["before_shutdown"].append((hook, label))

    def add_shutdown_hook(self, hook: Callable[[], Any], *, label: str = "") -> None:
        self._hooks["shutdown"].append((hook, label))

    async def run(self, phase: str, timeout: float = 10.0) -> None:
        """Run the hooks of ``phase`` in order; a failing or slow hook is logged, never fatal."""
        for hook, label in self._hooks[phase]:
            name = label or getattr(hook, "__qualname__", repr(hook))
            try:
                result = hook()
                if inspect.isawaitable(result):
                    await asyncio.wait_for(result, timeout)
            except TimeoutError:
                self._logger.error(f"{phase} hook {name} of {self._owner} timed out after {timeout}s")
            except Exception:
                self._logger.exception(f"{phase} hook {name} of {self._owner} failed")


@create_service_factory(core_services.root_lifecycle, {"logger": core_services.root_logger})
def _root_lifecycle(logger: Logger) -> LifecycleHooks:
    return LifecycleHooks(logger, "root")


@create_service_factory(
    core_services.lifecycle,
    {"logger": core_services.logger, "meta": core_services.plugin_metadata},
)
def _lifecycle(logger: Logger, meta: PluginMetadata) -> LifecycleHooks:
    return LifecycleHooks(logger, f"plugin '{meta.plugin_id}'")


FACTORIES = [_root_lifecycle, _lifecycle]

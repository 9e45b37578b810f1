"""Declaring a backend plugin: its id, the services it needs, and its init."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from kernel.errors import PluginDeclarationError
from kernel.service import ServiceRef

PLUGIN_ID_PATTERN = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")

InitFn = Callable[..., Awaitable[None] | None]


class BackendPlugin:
    """A plugin mounted at ``/api/<id>``; its init runs inside each of its worker processes."""

    def __init__(self, id: str) -> None:
        if not isinstance(id, str) or not PLUGIN_ID_PATTERN.match(id):
            raise PluginDeclarationError(f"invalid plugin id {id!r}: must match {PLUGIN_ID_PATTERN.pattern}")
        self.id = id
        self.deps: dict[str, ServiceRef[Any]] = {}
        self.init_fn: InitFn | None = None
        self.config_schema: type | None = None

    def init(self, **deps: ServiceRef[Any]) -> Callable[[InitFn], InitFn]:
        """Decorator registering the plugin's init and the services injected into it by name."""
        if self.init_fn is not None:
            raise PluginDeclarationError(f"plugin {self.id!r}: init registered twice")
        for name, ref in deps.items():
            if not isinstance(ref, ServiceRef):
                raise PluginDeclarationError(
                    f"plugin {self.id!r}: dependency {name!r} must be a ServiceRef, got {ref!r}"
                )

        def register(fn: InitFn) -> InitFn:
            if self.init_fn is not None:
                raise PluginDeclarationError(f"plugin {self.id!r}: init registered twice")
            self.deps = dict(deps)
            self.init_fn = fn
            return fn

        return register

    def __repr__(self) -> str:
        return f"BackendPlugin({self.id!r})"


def create_plugin(id: str, *, config_schema: type | None = None) -> BackendPlugin:
    """Declare a backend plugin; expose it through the ``kernel.plugins`` entry point group."""
    plugin = BackendPlugin(id)
    plugin.config_schema = config_schema
    return plugin

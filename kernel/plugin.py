"""Declaring backend features: a plugin (its id, the services it needs, its init), a module extending
a plugin, and the extension points a plugin opens to its modules.

As in the reference system: a module runs inside its plugin's worker, its init runs before the
plugin's, and it reaches the plugin through the extension points the plugin (or another of its
modules) registered. Extension points are open only while the modules start: once the plugin's
own init begins, a module that still uses one gets a ``PluginDeclarationError``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from kernel.errors import PluginDeclarationError
from kernel.openapi_spec import OpenApi
from kernel.service import ServiceRef

PLUGIN_ID_PATTERN = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
#: a config dot path a plugin or module declares it reads: ``integrations``, ``app.title``
CONFIG_PATH_PATTERN = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
#: extension point ids: dotted names, ``catalog.processing``
EXTENSION_POINT_PATTERN = re.compile(r"^[a-z][a-zA-Z0-9_-]*(\.[a-zA-Z0-9_-]+)*$")

InitFn = Callable[..., Awaitable[None] | None]
T = TypeVar("T")


class ExtensionPoint(Generic[T]):
    """A seam a plugin opens to its modules: an id, and the object modules get (typed ``T``)."""

    __slots__ = ("id",)

    def __init__(self, id: str) -> None:
        if not isinstance(id, str) or not EXTENSION_POINT_PATTERN.match(id):
            raise PluginDeclarationError(
                f"invalid extension point id {id!r}: use a dotted name like 'catalog.processing'"
            )
        self.id = id

    def __repr__(self) -> str:
        return f"extensionPoint{{{self.id}}}"


def create_extension_point(id: str) -> ExtensionPoint[Any]:
    """Declare an extension point (for a typed one: ``ExtensionPoint[MyInterface]("my-plugin.thing")``)."""
    return ExtensionPoint(id)


class PerStart:
    """An extension point's implementation made afresh for each start of the plugin (``factory()``)."""

    __slots__ = ("factory",)

    def __init__(self, factory: Callable[[], Any]) -> None:
        self.factory = factory

    def make(self) -> Any:
        return self.factory()


_MISSING: Any = object()


class _Feature:
    """What plugins and modules share: an init with injected dependencies, and extension points provided."""

    label = ""

    def __init__(self) -> None:
        self.deps: dict[str, ServiceRef[Any] | ExtensionPoint[Any]] = {}
        self.init_fn: InitFn | None = None
        #: extension point id -> (point, implementation)
        self.extension_points: dict[str, tuple[ExtensionPoint[Any], Any]] = {}
        self.started = False  # set when its plugin has started: no more extension points
        #: config its workers get besides their plugin's section (``kernel.config.scoping``)
        self.config_reads: tuple[str, ...] = ()
        self.config_secrets: tuple[str, ...] = ()

    def _declare_config(self, reads: tuple[str, ...], secrets: tuple[str, ...]) -> None:
        for kind, paths in (("config_reads", reads), ("config_secrets", secrets)):
            if isinstance(paths, str) or not all(isinstance(p, str) and CONFIG_PATH_PATTERN.match(p) for p in paths):
                raise PluginDeclarationError(
                    f"{self.label}: {kind} must be a tuple of config dot paths like 'app.title', got {paths!r}"
                )
        self.config_reads = tuple(reads)
        self.config_secrets = tuple(secrets)

    def _check_dep(self, name: str, ref: object) -> None:
        if not isinstance(ref, ServiceRef | ExtensionPoint):
            raise PluginDeclarationError(
                f"{self.label}: dependency {name!r} must be a ServiceRef or an ExtensionPoint, got {ref!r}"
            )

    def init(self, **deps: Any) -> Callable[[InitFn], InitFn]:
        """Decorator registering the init and what is injected into it, by parameter name."""
        if self.init_fn is not None:
            raise PluginDeclarationError(f"{self.label}: init registered twice")
        for name, ref in deps.items():
            self._check_dep(name, ref)

        def register(fn: InitFn) -> InitFn:
            if self.init_fn is not None:
                raise PluginDeclarationError(f"{self.label}: init registered twice")
            self.deps = dict(deps)
            self.init_fn = fn
            return fn

        return register

    def register_extension_point(
        self, point: ExtensionPoint[T], implementation: T = _MISSING, *, factory: Callable[[], T] | None = None
    ) -> None:
        """Provide ``point`` to the modules of this plugin; only before the plugin starts.

        ``factory``: called at each start of the plugin, so every start (each test backend in one
        process) has an implementation of its own; the plugin's init gets it by naming ``point``
        among its dependencies. ``implementation``: one object, shared by every start in the process.
        """
        if not isinstance(point, ExtensionPoint):
            raise PluginDeclarationError(f"{self.label}: {point!r} is not an ExtensionPoint")
        if (implementation is _MISSING) == (factory is None):
            raise PluginDeclarationError(
                f"{self.label}: extension point '{point.id}': give an implementation or a factory (one of them)"
            )
        if self.started:
            raise PluginDeclarationError(
                f"{self.label}: extension point '{point.id}' registered after start-up; "
                "register extension points where the plugin or module is declared"
            )
        if point.id in self.extension_points:
            raise PluginDeclarationError(f"{self.label}: extension point '{point.id}' registered twice")
        self.extension_points[point.id] = (point, implementation if factory is None else PerStart(factory))


class BackendPlugin(_Feature):
    """A plugin mounted at ``/api/<id>``; its init runs inside each of its worker processes."""

    def __init__(self, id: str) -> None:
        if not isinstance(id, str) or not PLUGIN_ID_PATTERN.match(id):
            raise PluginDeclarationError(f"invalid plugin id {id!r}: must match {PLUGIN_ID_PATTERN.pattern}")
        super().__init__()
        self.id = id
        self.label = f"plugin {id!r}"
        self.config_schema: type | None = None
        #: its OpenAPI document, served at ``/api/<id>/openapi.json`` (``kernel.openapi``)
        self.openapi: OpenApi | None = None

    def __repr__(self) -> str:
        return f"BackendPlugin({self.id!r})"


class BackendModule(_Feature):
    """A module of plugin ``plugin_id``: loaded into that plugin's workers, started before the plugin."""

    def __init__(self, plugin_id: str, module_id: str) -> None:
        for kind, value in (("plugin", plugin_id), ("module", module_id)):
            if not isinstance(value, str) or not PLUGIN_ID_PATTERN.match(value):
                raise PluginDeclarationError(f"invalid {kind} id {value!r}: must match {PLUGIN_ID_PATTERN.pattern}")
        super().__init__()
        self.plugin_id = plugin_id
        self.module_id = module_id
        self.label = f"module {module_id!r} for plugin {plugin_id!r}"

    def __repr__(self) -> str:
        return f"BackendModule({self.plugin_id!r}, {self.module_id!r})"


def create_plugin(
    id: str,
    *,
    config_schema: type | None = None,
    openapi: OpenApi | None = None,
    config_reads: tuple[str, ...] = (),
    config_secrets: tuple[str, ...] = (),
) -> BackendPlugin:
    """Declare a backend plugin; expose it through the ``kernel.plugins`` entry point group.

    ``openapi``: its OpenAPI document (``kernel.api.OpenApi``), served at ``/api/<id>/openapi.json``.
    ``config_reads``: config dot paths outside its own section its workers read (``"integrations"``,
    ``"app.title"``): they get their non-secret parts. ``config_secrets``: the secrets among them they
    read too (``"integrations.github.token"``). See docs/writing-a-plugin.md, "Config a plugin sees".
    """
    plugin = BackendPlugin(id)
    plugin._declare_config(config_reads, config_secrets)
    if openapi is not None and not isinstance(openapi, OpenApi):
        raise PluginDeclarationError(f"{plugin.label}: openapi must be an OpenApi, not {openapi!r}")
    plugin.config_schema = config_schema
    plugin.openapi = openapi
    return plugin


def create_module(
    *, plugin_id: str, module_id: str, config_reads: tuple[str, ...] = (), config_secrets: tuple[str, ...] = ()
) -> BackendModule:
    """Declare a module extending plugin ``plugin_id``; expose it through the ``kernel.plugins`` group too.

    ``config_reads``/``config_secrets``: as for ``create_plugin``, added to its plugin's workers' config.
    """
    module = BackendModule(plugin_id, module_id)
    module._declare_config(config_reads, config_secrets)
    return module

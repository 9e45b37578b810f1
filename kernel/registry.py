"""Finding installed plugins and hook providers, and validating them before anything runs.

Internal to the kernel: authors meet its results through ``kernel plugins`` and the
boot-failure messages, never its API.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib.metadata import EntryPoint, entry_points
from typing import Any, TypeVar

import pluggy

from kernel import hookspecs, plugin_paths
from kernel.container import check_dependencies
from kernel.errors import PluginDeclarationError
from kernel.modules import extension_point_problems
from kernel.plugin import BackendModule, BackendPlugin
from kernel.service import ServiceFactory, ServiceRef

ENTRY_POINT_GROUP = "kernel.plugins"
T = TypeVar("T")
#: the distribution whose entry points (the kernel's own features) load before any other package's
KERNEL_DISTRIBUTION = "kernel"
#: services the kernel hands to the container itself
PRESET_SERVICES = ("core.rootConfig", "core.rootHooks", "core.pluginMetadata", "core.httpRouter")

log = logging.getLogger("kernel")


@dataclass(frozen=True)
class ModuleEntry:
    """A module of a plugin found through an entry point: what is known of it without its code."""

    plugin_id: str
    module_id: str
    entry_point: str
    distribution: str
    version: str
    #: config paths outside its plugin's section it reads, and the secrets among them (``create_module``)
    config_reads: tuple[str, ...] = ()
    config_secrets: tuple[str, ...] = ()


@dataclass(frozen=True)
class PluginEntry:
    """A backend plugin found through an entry point: what is known of it without its code.

    This is all the ``kernel`` command and the supervisor hold (from the discovery report,
    ``kernel.plugin_scan``); only a process that imported the plugin holds a ``LoadedPlugin``.
    """

    id: str
    entry_point: str  # "name = module:attr"
    distribution: str
    version: str
    module: str
    #: the modules extending it, loaded into its workers with it
    modules: tuple[ModuleEntry, ...] = ()
    #: config paths outside its section it reads, and the secrets among them (``create_plugin``)
    config_reads: tuple[str, ...] = ()
    config_secrets: tuple[str, ...] = ()
    #: config paths the plugins' schemas mark secret (``kernel.config.plugin_secret_paths``) under its reads
    secret_paths: tuple[str, ...] = ()

    def reads(self) -> tuple[str, ...]:
        """The config paths it and its modules declare they read, besides its own section."""
        return tuple(dict.fromkeys([*self.config_reads, *(p for m in self.modules for p in m.config_reads)]))

    def secrets(self) -> tuple[str, ...]:
        """The secrets among them it and its modules declare they read."""
        return tuple(dict.fromkeys([*self.config_secrets, *(p for m in self.modules for p in m.config_secrets)]))


@dataclass(frozen=True)
class LoadedModule(ModuleEntry):
    """A module entry with the ``BackendModule`` its entry point loaded (in this process)."""

    module: BackendModule = field(kw_only=True, repr=False, compare=False)

    def entry(self) -> ModuleEntry:
        """The plain data, without the module object."""
        m = self.module
        return ModuleEntry(
            self.plugin_id,
            self.module_id,
            self.entry_point,
            self.distribution,
            self.version,
            m.config_reads,
            m.config_secrets,
        )


@dataclass(frozen=True)
class LoadedPlugin(PluginEntry):
    """A plugin entry with the ``BackendPlugin`` its entry point loaded (in this process) and its modules'."""

    plugin: BackendPlugin = field(kw_only=True, repr=False, compare=False)
    modules: tuple[LoadedModule, ...] = ()

    def entry(self) -> PluginEntry:
        """The plain data, without the plugin and module objects."""
        modules = tuple(m.entry() for m in self.modules)
        p = self.plugin
        return PluginEntry(
            self.id,
            self.entry_point,
            self.distribution,
            self.version,
            self.module,
            modules,
            p.config_reads,
            p.config_secrets,
        )


@dataclass(frozen=True)
class LoadFailure:
    """A plugin, module or provider that could not be loaded, and why."""

    name: str  # plugin id when known, else the entry point name
    distribution: str
    reason: str
    module: str = ""  # the module id, when the failure is a module's

    def __str__(self) -> str:
        if not self.name:  # a problem of the service graph, not of one plugin
            return self.reason
        if self.module:
            return f"module '{self.module}' for plugin '{self.name}' from package '{self.distribution}': {self.reason}"
        return f"plugin '{self.name}' from package '{self.distribution}': {self.reason}"


@dataclass(frozen=True)
class Step:
    """Code of one entry point about to run in this process: if it never returns, the culprit."""

    entry_point: str  # ``ep_key``; empty when unknown
    name: str  # the entry point's name
    distribution: str
    what: str  # "import of 'module:attr'", "kernel_provide_services", ...


@dataclass
class Registry:
    plugins: dict[str, LoadedPlugin] = field(default_factory=dict)
    factories: dict[str, ServiceFactory] = field(default_factory=dict)
    failures: list[LoadFailure] = field(default_factory=list)
    #: problems that load anyway, e.g. an entry point named otherwise than its plugin's id
    warnings: list[str] = field(default_factory=list)
    modules: dict[tuple[str, str], LoadedModule] = field(default_factory=dict)
    providers: list[str] = field(default_factory=list)
    provider_eps: list[str] = field(default_factory=list)
    manager: pluggy.PluginManager | None = None


def _load_order(ep: EntryPoint) -> tuple[bool, str, str]:
    """The kernel's own entry points first (later providers override earlier ones), then by package."""
    dist = ep.dist.name if ep.dist else ""
    return (dist != KERNEL_DISTRIBUTION, dist, ep.name)


def _dist_of(ep: EntryPoint) -> tuple[str, str]:
    dist = ep.dist
    return (dist.name, dist.version) if dist is not None else ("<unknown>", "")


def _module_of(value: str) -> str:
    return value.split(":", 1)[0].strip()


def new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def ep_key(ep: EntryPoint) -> str:
    return f"{ep.name} = {ep.value}"


#: the installed entry points with their distribution's name and version, once remembered
_remembered: list[tuple[EntryPoint, str, str]] | None = None


def remember_installed() -> None:
    """Scan the installed entry points (and their distributions' metadata) once and keep them.

    The worker zygote does it before it forks: each worker it forks then loads its plugin from that
    scan, in pages it shares, instead of reading every installed package's metadata itself.
    """
    global _remembered
    _remembered = [(ep, *_dist_of(ep)) for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=_load_order)]


def _installed(wanted: set[str] | None) -> Iterator[tuple[EntryPoint, str, str]]:
    """The installed entry points in load order, with their distributions; a fresh scan when some wanted
    key is not among those remembered (a package installed since)."""
    known = _remembered
    if known is not None and (wanted is None or wanted <= {ep_key(ep) for ep, _, _ in known}):
        yield from known
        return
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=_load_order):
        if wanted is None or ep_key(ep) in wanted:
            yield (ep, *_dist_of(ep))


def load_registry(
    only: Iterable[str] | None = None,
    *,
    services: bool = True,
    skip: Iterable[str] = (),
    before: Callable[[Step], None] | None = None,
    log_warnings: bool = True,
    manager: pluggy.PluginManager | None = None,
) -> Registry:
    """Load the entry points of ``kernel.plugins``; ``only`` limits them by ``ep_key``, ``skip`` leaves some out.

    A worker passes its own plugin's key and the providers' keys: other
    packages' plugins are not its to import; a gateway passes only the
    providers' keys and ``services=False`` (it builds no service). Nothing
    raises: each problem becomes a ``LoadFailure`` naming plugin and package.
    What loads all the same but is likely a mistake goes to ``warnings``, logged
    (logger ``kernel``) by the load of every package (``only=None``), so once per
    command rather than once per worker, unless ``log_warnings`` is false.
    ``before`` is told of each package's code about to run (its import, its
    ``kernel_provide_services``): the discovery child announces it, so a load that
    never returns still names its culprit (``kernel.plugin_scan``). ``manager``: register the
    providers into this one (after those it has) rather than a new one.
    """
    reg = Registry(manager=manager if manager is not None else new_manager())
    pm = reg.manager
    assert pm is not None
    wanted = set(only) if only is not None else None
    skipped = set(skip)
    for ep, dist, version in _installed(wanted):
        if (wanted is not None and ep_key(ep) not in wanted) or ep_key(ep) in skipped:
            continue
        if before is not None:
            before(Step(ep_key(ep), ep.name, dist, f"import of '{ep.value}'"))
        try:
            obj = ep.load()
        except PluginDeclarationError as exc:
            reg.failures.append(LoadFailure(ep.name, dist, str(exc)))
            continue
        except Exception as exc:  # any import-time error is the package's fault
            reg.failures.append(
                LoadFailure(ep.name, dist, f"import of '{ep.value}' failed: {type(exc).__name__}: {exc}")
            )
            continue
        if isinstance(obj, BackendPlugin):
            _add_plugin(reg, ep, obj, dist, version)
        elif isinstance(obj, BackendModule):
            _add_module(reg, ep, obj, dist, version)
        elif _implements_hooks(pm, obj):
            pm.register(obj, name=f"{dist}:{ep.name}")
            reg.providers.append(f"{dist}:{ep.name}")
            reg.provider_eps.append(ep_key(ep))
        else:
            reg.failures.append(
                LoadFailure(
                    ep.name,
                    dist,
                    f"entry point '{ep.value}' is neither a BackendPlugin, a BackendModule nor a module "
                    "implementing kernel hooks",
                )
            )
    if before is not None:
        before(Step("", "", "", "the module check"))  # kernel code: no package to blame
    plugin_paths.choose_from(pm)
    _attach_modules(reg)
    if wanted is None and log_warnings:
        for warning in reg.warnings:
            log.warning("%s", warning)
    if not services:
        return reg
    if before is not None:
        steps = dict(zip(reg.providers, reg.provider_eps, strict=True))

        def announce(provider: str) -> None:
            dist, _, name = provider.partition(":")
            before(Step(steps.get(provider, ""), name, dist, "kernel_provide_services"))

        reg.factories = collect_factories(pm, announce)
        before(Step("", "", "", "the service graph check"))  # kernel code from here: no package to blame
    else:
        reg.factories = collect_factories(pm)
    problems = check_dependencies(reg.factories, _service_deps(reg), PRESET_SERVICES)
    for line in problems:
        culprit = next((p for p in reg.plugins.values() if f"plugin '{p.id}'" in line), None)
        if culprit is not None:
            reg.plugins.pop(culprit.id, None)
            reg.failures.append(LoadFailure(culprit.id, culprit.distribution, line))
        else:
            reg.failures.append(LoadFailure("", "", line))
    return reg


def _add_plugin(reg: Registry, ep: EntryPoint, obj: BackendPlugin, dist: str, version: str) -> None:
    if obj.init_fn is None:
        reg.failures.append(LoadFailure(obj.id, dist, "plugin declares no init (use @plugin.init)"))
        return
    other = reg.plugins.get(obj.id)
    if other is not None:
        reg.failures.append(
            LoadFailure(
                obj.id,
                dist,
                f"duplicate plugin id '{obj.id}': also provided by package '{other.distribution}'",
            )
        )
        reg.plugins.pop(obj.id)
        return
    reg.plugins[obj.id] = LoadedPlugin(obj.id, ep_key(ep), dist, version, _module_of(ep.value), plugin=obj)
    if ep.name != obj.id:
        reg.warnings.append(
            f"plugin '{obj.id}' from package '{dist}': its entry point is named '{ep.name}' "
            f"('{ep_key(ep)}'), not '{obj.id}'; the plugin is served at /api/{obj.id} and configured "
            f"as '{obj.id}': name the entry point '{obj.id}'"
        )


def _add_module(reg: Registry, ep: EntryPoint, obj: BackendModule, dist: str, version: str) -> None:
    key = (obj.plugin_id, obj.module_id)
    if obj.init_fn is None:
        reg.failures.append(
            LoadFailure(obj.plugin_id, dist, "module declares no init (use @module.init)", obj.module_id)
        )
        return
    if key in reg.modules:
        reg.failures.append(
            LoadFailure(
                obj.plugin_id,
                dist,
                f"Module '{obj.module_id}' for plugin '{obj.plugin_id}' is already registered "
                f"(also by package '{reg.modules[key].distribution}')",
                obj.module_id,
            )
        )
        return
    reg.modules[key] = LoadedModule(obj.plugin_id, obj.module_id, ep_key(ep), dist, version, module=obj)


def _attach_modules(reg: Registry) -> None:
    """Give each plugin its modules; a module whose extension points cannot be met is a failure."""
    owners = {pid: p.id for p in reg.plugins.values() for pid in p.plugin.extension_points}
    for entry in reg.modules.values():
        for pid in entry.module.extension_points:
            owners.setdefault(pid, entry.plugin_id)
    by_plugin: dict[str, list[LoadedModule]] = {}
    for entry in reg.modules.values():
        if entry.plugin_id not in reg.plugins:
            reg.warnings.append(
                f"module '{entry.module_id}' from package '{entry.distribution}' extends plugin "
                f"'{entry.plugin_id}', which is not installed: the module is not loaded"
            )
            continue
        by_plugin.setdefault(entry.plugin_id, []).append(entry)
    for plugin_id in list(reg.plugins):
        plugin = reg.plugins[plugin_id]
        entries = by_plugin.get(plugin_id, [])
        problems = extension_point_problems(plugin.plugin, [e.module for e in entries], owners)
        if "" in problems:  # the plugin's own init names an extension point nobody registers
            reg.failures.append(LoadFailure(plugin_id, plugin.distribution, problems[""]))
        for e in entries:
            if e.module_id in problems:
                reg.failures.append(LoadFailure(plugin_id, e.distribution, problems[e.module_id], e.module_id))
        kept = tuple(e for e in entries if e.module_id not in problems)
        reg.plugins[plugin_id] = replace(plugin, modules=kept)


def _service_deps(reg: Registry) -> list[tuple[str, Mapping[str, Any]]]:
    """(who, its service dependencies) for every plugin and module, for the service graph check."""
    out: list[tuple[str, Mapping[str, Any]]] = []
    for p in reg.plugins.values():
        for feature in (p.plugin, *(m.module for m in p.modules)):
            out.append((p.id, {k: v for k, v in feature.deps.items() if isinstance(v, ServiceRef)}))
    return out


def _implements_hooks(pm: pluggy.PluginManager, obj: Any) -> bool:
    return any(callable(getattr(obj, name, None)) for name in HOOK_NAMES)


#: every hook of ``kernel.hookspecs``
HOOK_NAMES = tuple(name for name in dir(hookspecs) if name.startswith("kernel_"))


def collect_factories(
    pm: pluggy.PluginManager, before: Callable[[str], None] | None = None
) -> dict[str, ServiceFactory]:
    """Service factories by ref id; a provider registered later overrides an earlier one.

    ``before(provider_name)`` is called before each provider's ``kernel_provide_services`` runs.
    """
    factories: dict[str, ServiceFactory] = {}
    for impl in pm.hook.kernel_provide_services.get_hookimpls():
        if before is not None:
            before(impl.plugin_name)
        provided: Iterable[object] = impl.function() or ()  # type: ignore[assignment]
        for factory in provided:
            if not isinstance(factory, ServiceFactory):
                raise TypeError(f"{impl.plugin_name}: kernel_provide_services returned {factory!r}")
            factories[factory.service.id] = ServiceFactory(
                factory.service, factory.factory, factory.deps, impl.plugin_name, factory.eager
            )
    return factories


def in_registration_order(results: Sequence[Iterable[T]]) -> list[T]:
    """The items a hook's implementations returned, in the order the packages were registered.

    pluggy calls the last registered implementation first; the kernel's own come first.
    """
    return [item for found in reversed(results) for item in found]


def split_failures(
    failures: Iterable[LoadFailure],
    policy_for: Callable[[str], str],
    module_policy_for: Callable[[str, str], str] = lambda plugin_id, module_id: "abort",
) -> tuple[list[LoadFailure], list[LoadFailure]]:
    """(fatal, tolerated) according to each plugin's (and module's) boot-failure policy.

    A module allowed to fail is tolerated (its plugin starts without it); any other module
    failure is its plugin's, and the plugin's policy decides. Service-graph problems are fatal.
    """
    fatal: list[LoadFailure] = []
    tolerated: list[LoadFailure] = []
    for f in failures:
        if f.module and module_policy_for(f.name, f.module) == "continue":
            tolerated.append(f)
        else:
            (tolerated if f.name and policy_for(f.name) == "continue" else fatal).append(f)
    return fatal, tolerated

"""The kernel's settings: one typed schema, one default per setting, read from the app-config.

Every key the kernel itself reads is here (``backend.listen``, ``backend.baseUrl``,
``backend.gateway``, ``backend.workers``, ``backend.startup``, ``backend.logging``,
``backend.config.reload``, ``backend.auth``, ``backend.metrics``, ``backend.gateway`` (in
``kernel.gateway_settings``), ``backend.tracing`` (in ``kernel.tracing_settings``),
and the HTTP edge's keys in ``kernel.edge_settings``: ``backend.cors``, ``backend.csp``,
``backend.rateLimit``, ...); nothing else re-defaults them.
``read_settings`` reads and validates all of it, and a mistake is a ``ConfigError`` naming the key.

A contract module: it imports only msgspec, the standard library and ``kernel.errors``, so
``kernel.api`` can export it. For the same reason the two pure config helpers live here:
``read_section`` (a config subtree as a msgspec type) and ``merge`` (the config deep-merge).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal, Protocol, TypeVar

import msgspec

from kernel.edge_settings import EdgeSettings, read_edge_settings
from kernel.errors import ConfigError
from kernel.gateway_settings import GatewaySettings
from kernel.protocol import PermissionRestriction
from kernel.tracing_settings import TracingSettings, read_tracing_settings
from kernel.worker_settings import PluginLimits, PluginWorkers, WorkerLimits, WorkerSettings

__all__ = [
    "LOG_LEVELS",
    "PLUGIN_LOGGER_PREFIX",
    "AccessRestriction",
    "AuthSettings",
    "BootPolicy",
    "ConfigReader",
    "EdgeSettings",
    "ExternalAccess",
    "GatewaySettings",
    "Listen",
    "LoggingSettings",
    "PluginLimits",
    "PluginLogging",
    "PluginWorkers",
    "ReloadSettings",
    "Settings",
    "Startup",
    "TracingSettings",
    "WorkerLimits",
    "WorkerSettings",
    "merge",
    "read_auth_settings",
    "read_logging_settings",
    "read_reload_settings",
    "read_section",
    "read_settings",
]

#: the level names ``backend.logging`` accepts, in the order error messages list them
LOG_LEVELS: Final = ("debug", "info", "warn", "warning", "error", "critical")
#: a plugin's stdlib logger is ``PLUGIN_LOGGER_PREFIX + <pluginId>``; ``backend.logging.plugins.<id>`` sets its level
PLUGIN_LOGGER_PREFIX: Final = "kernel.plugin."


class ConfigReader(Protocol):
    """The read-only getters of a config (``kernel.config.Config``, and every ``RootConfig``)."""

    def get(self, key: str | None = None) -> Any: ...
    def get_optional(self, key: str) -> Any: ...
    def get_string(self, key: str) -> str: ...
    def get_optional_string(self, key: str) -> str | None: ...
    def get_number(self, key: str) -> float: ...
    def get_optional_number(self, key: str) -> float | None: ...
    def get_boolean(self, key: str) -> bool: ...
    def get_optional_boolean(self, key: str) -> bool | None: ...
    def has(self, key: str) -> bool: ...
    def keys(self) -> list[str]: ...
    def get_string_list(self, key: str) -> list[str]: ...
    def get_optional_string_list(self, key: str) -> list[str] | None: ...
    def source(self, key: str | None = None) -> str | None: ...


# ---------------------------------------------------------------------------- pure config helpers

_T = TypeVar("_T")


class _HasGetOptional(Protocol):
    def get_optional(self, key: str) -> Any: ...


def merge(base: Any, over: Any) -> Any:
    """Objects deep-merge; everything else (arrays, scalars, null) replaces."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = merge(base[k], v) if k in base else v
        return out
    return over


def read_section(config: _HasGetOptional, key: str, type_: type[_T]) -> _T:
    """The config subtree at ``key`` converted to a msgspec type; a mistake names the full key.

    Strings convert to numbers and booleans (``${PORT}`` is always a string).
    """
    raw = config.get_optional(key)
    try:
        return msgspec.convert(raw if raw is not None else {}, type_, strict=False)
    except msgspec.ValidationError as exc:
        msg = str(exc).replace("`$.", f"`{key}.").replace("`$[", f"`{key}[").replace("`$`", f"`{key}`")
        raise ConfigError(f"Invalid config under '{key}': {msg}") from None


# ---------------------------------------------------------------------------- the schema


class _S(msgspec.Struct, forbid_unknown_fields=True, rename="camel", frozen=True):
    pass


class Listen(_S, frozen=True):
    """``backend.listen``: where the gateway accepts connections."""

    #: address the gateway listens on (`0.0.0.0`: every interface)
    host: str = "0.0.0.0"
    #: port the gateway listens on
    port: int = 7007


OnFailure = Literal["abort", "continue"]


class BootPolicy(_S, frozen=True):
    """``backend.startup.default``: what a failing plugin, or a failing module of a plugin, does to start-up."""

    #: `abort`: a plugin that fails to start stops `kernel serve`; `continue`: the others serve, readiness lists it
    on_plugin_boot_failure: OnFailure = "abort"
    #: `abort`: a module that fails to start fails its plugin; `continue`: the plugin starts without it
    on_plugin_module_boot_failure: OnFailure = "abort"


class ModuleStartup(_S, frozen=True):
    #: this module's `onPluginModuleBootFailure`
    on_plugin_module_boot_failure: OnFailure | None = None


class PluginStartup(_S, frozen=True):
    """``backend.startup.plugins.<pluginId>``: unset keys follow the default."""

    #: this plugin's `onPluginBootFailure`
    on_plugin_boot_failure: OnFailure | None = None
    modules: dict[str, ModuleStartup] = {}


class Startup(_S, frozen=True):
    """``backend.startup``."""

    default: BootPolicy = BootPolicy()
    plugins: dict[str, PluginStartup] = {}


class PluginLogging(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    #: the level of this plugin's logger
    level: str | None = None


class LoggingSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """``backend.logging``: ``level`` (else ``KERNEL_LOG_LEVEL``, else info), ``format`` (text|json)."""

    #: debug, info, warn, error or critical (unset: `KERNEL_LOG_LEVEL`, else info)
    level: str | None = None
    #: `text` or `json` (unset: json when `KERNEL_ENV=production`, else text)
    format: str | None = None
    plugins: dict[str, PluginLogging] = {}


class ReloadSettings(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    """``backend.config.reload``."""

    #: reload the config files when they change and push a valid new config to every process
    enabled: bool = False
    watch_files: bool = True  # poll the config files' mtimes every pollSeconds
    #: seconds between looks at the config files' modification times
    poll_seconds: float = 1.0
    interval_seconds: float | None = None  # also reload unconditionally this often


class AccessRestriction(msgspec.Struct, rename="camel", frozen=True):
    """One entry of ``accessRestrictions``: the plugin a credential may reach, optionally narrowed."""

    #: a plugin the credential may call
    plugin: str
    #: the permissions allowed in it (a list, or names separated by commas or spaces)
    permission: str | list[str] | None = None
    #: `{action: [...]}`: the actions (create, read, update, delete) allowed in it
    permission_attribute: dict[str, str | list[str]] | None = None


class ExternalAccess(msgspec.Struct, rename="camel", frozen=True):
    """One entry of ``backend.auth.externalAccess``; ``options`` are the ``type``'s own (checked by it)."""

    #: `static`, `legacy` or `jwks` (README, "Security defaults")
    type: str
    #: the type's options: `token` and `subject` for `static`, ...
    options: dict[str, Any] = {}
    #: the plugins (and permissions) the credential may reach; absent: every plugin
    access_restrictions: list[AccessRestriction] | None = None


class StaticKey(msgspec.Struct, rename="camel", frozen=True, forbid_unknown_fields=True):
    """A key pair from files: ``publicKeyFile`` (SPKI PEM), ``privateKeyFile`` (PKCS#8 PEM, to sign with)."""

    #: SPKI PEM file of the public key
    public_key_file: str
    #: the `kid` of the tokens signed with it
    key_id: str
    #: PKCS#8 PEM file of the private key (the first key, which signs, needs one)
    private_key_file: str | None = None
    #: the signing algorithm (only ES256)
    algorithm: Literal["ES256"] = "ES256"


class StaticKeys(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    #: the key pairs; the first one signs, every one is published
    keys: list[StaticKey] = []


class PluginKeyStore(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``backend.auth.pluginKeyStore`` (the reference system's key): where plugins' signing keys come from.

    ``database`` (default): each worker makes its own, published through the plugin's database.
    ``static``: ``static.keys`` from files, the first one signs (it needs its private key file),
    every one is published; the same files can serve several backends.
    """

    #: `database` or `static` (see above)
    type: Literal["database", "static"] = "database"
    static: StaticKeys = StaticKeys()


class AuthSettings(msgspec.Struct, rename="camel", frozen=True):
    """``backend.auth``; other keys belong to the token system's packages and are ignored here."""

    #: tokens other systems present (`Authorization: Bearer ...`); none by default
    external_access: list[ExternalAccess] = []
    #: how long a plugin signs with one key (and its tokens live at most); a new key follows
    key_duration_seconds: float = 3600.0
    plugin_key_store: PluginKeyStore = PluginKeyStore()


class MetricsSettings(_S, frozen=True):
    """``backend.metrics``: Prometheus/OpenMetrics text of every process of the kernel, aggregated."""

    #: collect and serve metrics (the gateways' request figures, the workers' services, every process)
    enabled: bool = True
    #: ``own``: a listener of their own at ``host``:``port``, open (keep it on loopback or a private
    #: network); ``main``: at ``path`` on the main listener, for the dashboard's operators only
    listener: Literal["own", "main"] = "own"
    #: the address of their own listener
    host: str = "127.0.0.1"
    #: its port (9464, the usual Prometheus exporter port; 0: a free one, logged)
    port: int = 9464
    #: the path they are served at
    path: str = "/metrics"


class Settings(msgspec.Struct, frozen=True):
    """Every setting of the kernel; the defaults here are the only ones."""

    listen: Listen = Listen()
    base_url: str | None = None  # backend.baseUrl: how the outside world reaches the gateway
    gateway: GatewaySettings = GatewaySettings()
    workers: WorkerSettings = WorkerSettings()
    startup: Startup = Startup()
    logging: LoggingSettings = LoggingSettings()
    reload: ReloadSettings = ReloadSettings()
    auth: AuthSettings = AuthSettings()
    edge: EdgeSettings = EdgeSettings()  # backend.cors, backend.csp, backend.rateLimit, backend.https, ...
    metrics: MetricsSettings = MetricsSettings()
    tracing: TracingSettings = TracingSettings()  # backend.tracing (kernel.tracing_settings)

    def replicas(self, plugin_id: str) -> int:
        own = self.workers.plugins.get(plugin_id)
        return own.replicas if own is not None and own.replicas is not None else self.workers.replicas

    def limits(self, plugin_id: str) -> WorkerLimits:
        """The limits of ``plugin_id``'s workers: its own overrides on the defaults."""
        own = self.workers.plugins.get(plugin_id)
        if own is None:
            return self.workers.limits
        changed = {k: v for k in PluginLimits.__struct_fields__ if (v := getattr(own.limits, k)) is not None}
        return msgspec.structs.replace(self.workers.limits, **changed) if changed else self.workers.limits

    def lowest_in_flight_limit(self) -> int:
        """The smallest ``maxInFlight`` of any plugin (0: none is limited)."""
        found = [self.workers.limits.max_in_flight]
        found += [p.limits.max_in_flight for p in self.workers.plugins.values() if p.limits.max_in_flight is not None]
        return min((v for v in found if v), default=0)

    def boot_policy(self, plugin_id: str) -> str:
        own = self.startup.plugins.get(plugin_id)
        return (own and own.on_plugin_boot_failure) or self.startup.default.on_plugin_boot_failure

    def module_boot_policy(self, plugin_id: str, module_id: str) -> str:
        """``abort``: a failing module fails its plugin (whose own policy then applies); ``continue``: skipped."""
        own = self.startup.plugins.get(plugin_id)
        module = own.modules.get(module_id) if own else None
        return (module and module.on_plugin_module_boot_failure) or self.startup.default.on_plugin_module_boot_failure


# ---------------------------------------------------------------------------- reading


def _check_level(key: str, level: str | None) -> None:
    if level is not None and level.lower() not in LOG_LEVELS:
        raise ConfigError(f"Invalid config: {key} must be one of {', '.join(LOG_LEVELS)}, got '{level}'")


def read_logging_settings(config: _HasGetOptional) -> LoggingSettings:
    """``backend.logging``, validated; a mistake is a ``ConfigError`` naming the key."""
    s = read_section(config, "backend.logging", LoggingSettings)
    _check_level("backend.logging.level", s.level)
    for pid, own in s.plugins.items():
        _check_level(f"backend.logging.plugins.{pid}.level", own.level)
    if s.format is not None and s.format not in ("text", "json"):
        raise ConfigError(f"Invalid config: backend.logging.format must be text or json, got '{s.format}'")
    return s


def read_reload_settings(config: _HasGetOptional) -> ReloadSettings:
    """``backend.config.reload``, validated; a mistake is a ``ConfigError`` naming the key."""
    settings = read_section(config, "backend.config.reload", ReloadSettings)
    for name, v in (("pollSeconds", settings.poll_seconds), ("intervalSeconds", settings.interval_seconds)):
        if v is not None and not (v > 0 and math.isfinite(v)):
            raise ConfigError(f"Invalid config: backend.config.reload.{name} must be a positive number")
    return settings


def read_auth_settings(config: _HasGetOptional) -> AuthSettings:
    """``backend.auth``: the generic shape of every ``externalAccess`` entry, whatever its type."""
    access = config.get_optional("backend.auth.externalAccess")
    if access is not None and not isinstance(access, list):
        raise ConfigError("Invalid config: backend.auth.externalAccess must be a list")
    for i, raw in enumerate(access or ()):
        where = f"backend.auth.externalAccess[{i}]"
        if not isinstance(raw, dict) or "type" not in raw:
            raise ConfigError(f"Invalid config: {where} must be an object with a 'type'")
        restrictions = raw.get("accessRestrictions")
        if restrictions is not None and (
            not isinstance(restrictions, list)
            or not all(isinstance(r, dict) and isinstance(r.get("plugin"), str) for r in restrictions)
        ):
            raise ConfigError(f"Invalid config: {where}.accessRestrictions must be a list of {{plugin: <id>}}")
    return read_section(config, "backend.auth", AuthSettings)


def read_settings(config: ConfigReader) -> Settings:
    """Every kernel setting (see the module doc), validated; a mistake is a ``ConfigError`` naming the key."""
    settings = Settings(
        listen=read_section(config, "backend.listen", Listen),
        base_url=config.get_optional_string("backend.baseUrl"),
        gateway=read_section(config, "backend.gateway", GatewaySettings),
        workers=read_section(config, "backend.workers", WorkerSettings),
        startup=read_section(config, "backend.startup", Startup),
        logging=read_logging_settings(config),
        reload=read_reload_settings(config),
        auth=read_auth_settings(config),
        edge=read_edge_settings(config),
        metrics=read_section(config, "backend.metrics", MetricsSettings),
        tracing=read_tracing_settings(config),
    )
    if settings.gateway.processes < 1:
        raise ConfigError("Invalid config: backend.gateway.processes must be at least 1")
    if not 0 <= settings.listen.port <= 65535:
        source = config.source("backend.listen.port")
        where = f" (from {source})" if source else ""
        raise ConfigError(
            f"Invalid config: backend.listen.port must be between 0 and 65535, got {settings.listen.port}{where}"
        )
    if not 0 < settings.auth.key_duration_seconds <= 3600:
        raise ConfigError("Invalid config: backend.auth.keyDurationSeconds must be more than 0 and at most 3600")
    store = settings.auth.plugin_key_store
    if store.type == "static" and (not store.static.keys or store.static.keys[0].private_key_file is None):
        raise ConfigError(
            "Invalid config: backend.auth.pluginKeyStore of type static needs static.keys, "
            "the first with a privateKeyFile to sign with"
        )
    return settings


# ---------------------------------------------------------------------------- access restrictions

#: the values ``permissionAttribute.action`` of an access restriction may take
ACTIONS = ("create", "read", "update", "delete")
_RESTRICTION_KEYS = ("plugin", "permission", "permissionAttribute")


def split_names(value: Any, where: str, allowed: Sequence[str] = ()) -> list[str] | None:
    """A string (names separated by commas or spaces) or a list of them; deduplicated, ``None`` if empty."""
    if isinstance(value, str):
        raw = [value]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        raw = value
    else:
        raise ConfigError(f"Invalid config: {where} must be a string or a list of strings")
    names = list(dict.fromkeys(name for v in raw for name in re.split(r"[ ,]", v) if name))
    for name in names:
        if allowed and name not in allowed:
            raise ConfigError(f"Invalid config: {where} has '{name}', expected one of {', '.join(allowed)}")
    return names or None


def access_restrictions_of(
    entry: Mapping[str, Any], where: str
) -> tuple[list[str] | None, list[PermissionRestriction] | None]:
    """The plugins an ``externalAccess`` entry may reach, and what it may do in them (``None``: unrestricted).

    ``entry`` is the raw config entry (already shaped by ``read_settings``). As Backstage: only the
    keys ``plugin``, ``permission`` and ``permissionAttribute`` (whose only key is ``action``, of
    create/read/update/delete), and one entry per plugin.
    """
    restrictions = entry.get("accessRestrictions")
    if restrictions is None:
        return None, None
    plugins: list[str] = []
    permissions: list[PermissionRestriction] = []
    for j, restriction in enumerate(restrictions):
        at = f"{where}.accessRestrictions[{j}]"
        unknown = [key for key in restriction if key not in _RESTRICTION_KEYS]
        if unknown:
            expected = ", ".join(_RESTRICTION_KEYS)
            raise ConfigError(f"Invalid config: {at} has unknown key '{unknown[0]}', expected one of {expected}")
        plugin = restriction["plugin"]
        if plugin in plugins:
            raise ConfigError(
                f"Invalid config: {at} restricts plugin '{plugin}' a second time: give each plugin one entry"
            )
        names = restriction.get("permission")
        names = None if names is None else split_names(names, f"{at}.permission")
        attribute = restriction.get("permissionAttribute")
        actions = None
        if attribute is not None:
            if not isinstance(attribute, dict) or any(key != "action" for key in attribute):
                raise ConfigError(
                    f"Invalid config: {at}.permissionAttribute must be an object whose only key is 'action'"
                )
            if attribute.get("action") is not None:
                actions = split_names(attribute["action"], f"{at}.permissionAttribute.action", ACTIONS)
        plugins.append(plugin)
        if names is not None or actions is not None:
            permissions.append(PermissionRestriction(plugin, names, actions))
    return plugins, permissions or None

"""The kernel's settings: one typed schema, one default per setting, read from the app-config.

Every key the kernel itself reads is here, one module per section: ``listen`` (``backend.listen``),
``gateway``, ``workers``, ``startup``, ``logs`` (``backend.logging``), ``reload``
(``backend.config.reload``), ``auth`` (with ``access``: what an ``externalAccess`` credential may
reach), ``metrics``, ``tracing``, ``lifecycle`` (leaving on SIGTERM), and the HTTP edge's keys in
``edge`` (with ``cors``, ``headers``: ``backend.csp`` and ``backend.securityHeaders``, ``ratelimit``
and ``dashboard``); ``schema`` holds ``Settings``, the root, and ``read_settings``, which reads and
validates all of it (a mistake is a ``ConfigError`` naming the key); ``base``, the base struct and the
config helpers (``read_section``, ``merge``). Nothing else re-defaults a key. This module re-exports what the others define.

A contract package (``kernel.api`` exports parts of it): its modules import msgspec, the standard
library, ``kernel.errors``, ``kernel.protocol`` (``access`` only) and each other; no I/O.
"""

from __future__ import annotations

from kernel.settings.access import ACTIONS, access_restrictions_of, split_names
from kernel.settings.auth import (
    AccessRestriction,
    AuthSettings,
    ExternalAccess,
    PluginKeyStore,
    StaticKey,
    StaticKeys,
    read_auth_settings,
)
from kernel.settings.base import ConfigReader, merge, read_section
from kernel.settings.cors import CorsSettings
from kernel.settings.dashboard import DashboardSettings, read_dashboard_settings
from kernel.settings.edge import (
    AccessLogSettings,
    Certificate,
    CompressionSettings,
    EdgeSettings,
    HealthSettings,
    HttpsSettings,
    RequestIdSettings,
    read_edge_settings,
)
from kernel.settings.gateway import GatewaySettings
from kernel.settings.headers import CSP_DIRECTIVES, SECURITY_HEADERS
from kernel.settings.lifecycle import LifecycleSettings, read_lifecycle_settings
from kernel.settings.listen import Listen
from kernel.settings.logs import (
    LOG_LEVELS,
    PLUGIN_LOGGER_PREFIX,
    LoggingSettings,
    LogRate,
    PluginLogging,
    read_logging_settings,
)
from kernel.settings.metrics import MetricsSettings
from kernel.settings.ratelimit import PluginRateLimit, RateLimitSettings, RateLimitStore, parse_duration
from kernel.settings.reload import ReloadSettings, read_reload_settings
from kernel.settings.schema import Settings, read_settings
from kernel.settings.startup import BootPolicy, ModuleStartup, OnFailure, PluginStartup, Startup
from kernel.settings.tracing import OTEL_PACKAGES, Exporter, OtlpSettings, TracingSettings, read_tracing_settings
from kernel.settings.workers import (
    OsId,
    OsUser,
    PluginLimits,
    PluginWorkers,
    RemoteWorkers,
    WorkerLimits,
    WorkerSettings,
)

__all__ = [
    "ACTIONS",
    "CSP_DIRECTIVES",
    "LOG_LEVELS",
    "OTEL_PACKAGES",
    "PLUGIN_LOGGER_PREFIX",
    "SECURITY_HEADERS",
    "AccessLogSettings",
    "AccessRestriction",
    "AuthSettings",
    "BootPolicy",
    "Certificate",
    "CompressionSettings",
    "ConfigReader",
    "CorsSettings",
    "DashboardSettings",
    "EdgeSettings",
    "Exporter",
    "ExternalAccess",
    "GatewaySettings",
    "HealthSettings",
    "HttpsSettings",
    "LifecycleSettings",
    "Listen",
    "LogRate",
    "LoggingSettings",
    "MetricsSettings",
    "ModuleStartup",
    "OnFailure",
    "OsId",
    "OsUser",
    "OtlpSettings",
    "PluginKeyStore",
    "PluginLimits",
    "PluginLogging",
    "PluginRateLimit",
    "PluginStartup",
    "PluginWorkers",
    "RateLimitSettings",
    "RateLimitStore",
    "ReloadSettings",
    "RemoteWorkers",
    "RequestIdSettings",
    "Settings",
    "Startup",
    "StaticKey",
    "StaticKeys",
    "TracingSettings",
    "WorkerLimits",
    "WorkerSettings",
    "access_restrictions_of",
    "merge",
    "parse_duration",
    "read_auth_settings",
    "read_dashboard_settings",
    "read_edge_settings",
    "read_lifecycle_settings",
    "read_logging_settings",
    "read_reload_settings",
    "read_section",
    "read_settings",
    "read_tracing_settings",
    "split_names",
]

"""``backend.tracing``: OpenTelemetry traces, off by default (the ``otel`` extra).

``read_tracing_settings`` reads and validates it, a mistake is a ``ConfigError`` naming the key;
what it drives is in ``kernel.tracing``.

A contract module: it imports the standard library (``importlib.util``, to find the extra without
importing it), ``kernel.errors`` and ``kernel.settings.base``; no I/O.
"""

from __future__ import annotations

import importlib.util
from typing import Literal

from kernel.errors import ConfigError
from kernel.settings.base import HasGetOptional, SettingsStruct, read_section

__all__ = ["OTEL_PACKAGES", "Exporter", "OtlpSettings", "TracingSettings", "read_tracing_settings"]


#: the modules ``backend.tracing.enabled`` needs (the ``otel`` extra: ``pip install 'kernel[otel]'``)
OTEL_PACKAGES = ("opentelemetry.sdk", "opentelemetry.instrumentation.aiohttp_client")

Exporter = Literal["otlp", "console", "file", "none"]


class OtlpSettings(SettingsStruct, frozen=True):
    """``backend.tracing.otlp``: where the ``otlp`` exporter sends spans (OTLP over HTTP, protobuf)."""

    #: the collector's traces URL; not set: ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, else ``http://localhost:4318/v1/traces``
    endpoint: str | None = None
    #: headers sent with every export (an API key of a hosted collector, ...)
    headers: dict[str, str] = {}
    #: seconds one export may take
    timeout: float = 10.0


class TracingSettings(SettingsStruct, frozen=True):
    """``backend.tracing``: a span per request in the gateway and in the worker, W3C ``traceparent`` in and out.

    Off by default, and then nothing of OpenTelemetry is imported. On, every process (gateways and
    workers) sends its spans to ``exporter``; plugin-to-plugin and proxy calls carry the trace on.
    """

    #: trace requests (needs the ``otel`` extra: ``pip install 'kernel[otel]'``)
    enabled: bool = False
    #: ``service.name`` of every process's spans (each also names its role and plugin)
    service_name: str = "kernel"
    #: ``otlp`` (to a collector), ``console`` (each process's stdout), ``file`` (JSON lines, one span a line, at ``file``), ``none``
    exporter: Exporter = "otlp"
    otlp: OtlpSettings = OtlpSettings()
    #: the JSON-lines file of the ``file`` exporter, appended to by every process
    file: str | None = None
    #: share of new traces recorded, 0 to 1; a request whose ``traceparent`` is sampled (or not) follows its caller
    sampler_ratio: float = 1.0


def read_tracing_settings(config: HasGetOptional) -> TracingSettings:
    """``backend.tracing``, validated; on, the ``otel`` extra must be installed."""
    key = "backend.tracing"
    settings = read_section(config, key, TracingSettings)
    if not 0.0 <= settings.sampler_ratio <= 1.0:
        raise ConfigError(f"Invalid config: {key}.samplerRatio must be between 0 and 1, got {settings.sampler_ratio}")
    if settings.exporter == "file" and not settings.file:
        raise ConfigError(f"Invalid config: {key}.exporter 'file' needs {key}.file (a path)")
    if not settings.service_name:
        raise ConfigError(f"Invalid config: {key}.serviceName must not be empty")
    if settings.enabled:
        missing = [name for name in OTEL_PACKAGES if not _importable(name)]
        if missing:
            raise ConfigError(
                f"Invalid config: {key}.enabled needs the otel extra (pip install 'kernel[otel]'); missing {missing[0]}"
            )
    return settings


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False

"""One process's tracer provider: resource, sampler, exporter; and aiohttp's client spans.

Imported only when ``backend.tracing.enabled`` (it imports OpenTelemetry, the ``otel`` extra).
Exporters: ``otlp`` batches spans to a collector over HTTP; ``console`` prints each span as it
ends; ``file`` appends each span, as one JSON line, to a file every process shares (opened with
``O_APPEND``, one write per span); ``none`` records and propagates but sends nothing.
"""

from __future__ import annotations

import os
from typing import Any

from opentelemetry import trace
from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from kernel.settings import TracingSettings

__all__ = ["install", "processor_for", "resource_attributes"]

#: the instrumentation's attribute names: the stable HTTP conventions, as the kernel's own spans use
_SEMCONV_ENV = "OTEL_SEMCONV_STABILITY_OPT_IN"


def resource_attributes(
    settings: TracingSettings, *, role: str, name: str, plugin_id: str | None = None
) -> dict[str, Any]:
    """What every span of this process says about where it comes from."""
    attributes: dict[str, Any] = {
        "service.name": settings.service_name,
        "kernel.process.role": role,
        "kernel.process.name": name,
        "process.pid": os.getpid(),
    }
    if plugin_id is not None:
        attributes["kernel.plugin.id"] = plugin_id
    return attributes


def processor_for(settings: TracingSettings) -> SpanProcessor | None:
    """The span processor of ``settings.exporter`` (``None`` for ``none``)."""
    if settings.exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        otlp = settings.otlp
        exporter = OTLPSpanExporter(endpoint=otlp.endpoint, headers=otlp.headers or None, timeout=otlp.timeout)
        return BatchSpanProcessor(exporter)
    if settings.exporter == "console":
        return SimpleSpanProcessor(ConsoleSpanExporter())
    if settings.exporter == "file":
        assert settings.file is not None  # read_tracing_settings checks it
        out = open(settings.file, "a", encoding="utf-8")  # O_APPEND: every process's lines stay whole
        return SimpleSpanProcessor(ConsoleSpanExporter(out=out, formatter=_json_line))
    return None


def _json_line(span: ReadableSpan) -> str:
    line: str = span.to_json(indent=None)
    return line + "\n"


def install(settings: TracingSettings, *, role: str, name: str, plugin_id: str | None = None) -> TracerProvider:
    """Make this process's provider the global one and instrument aiohttp's client sessions."""
    os.environ.setdefault(_SEMCONV_ENV, "http")
    provider = TracerProvider(
        resource=Resource.create(resource_attributes(settings, role=role, name=name, plugin_id=plugin_id)),
        sampler=ParentBased(TraceIdRatioBased(settings.sampler_ratio)),
    )
    processor = processor_for(settings)
    if processor is not None:
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    AioHttpClientInstrumentor().instrument(tracer_provider=provider)
    return provider

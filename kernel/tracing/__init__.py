"""Traces: OpenTelemetry across the gateway, the workers and their outgoing calls (``backend.tracing``).

Off (the default), nothing of OpenTelemetry is imported and nothing is installed: this module's
hook returns no middleware and no process starts a tracer provider. On (the ``otel`` extra):

- every gateway and worker process calls ``start_tracing`` once at start (``kernel.launch.start_child``):
  a ``TracerProvider`` whose resource names ``service.name``, the process's role (``gateway`` or
  ``worker``), its name and, in a worker, its plugin; a parent-based ratio sampler; the configured
  exporter. aiohttp client sessions are instrumented
  (``opentelemetry-instrumentation-aiohttp-client``): a plugin-to-plugin call (``pluginClient``)
  or a proxied request is a CLIENT span whose context goes out as ``traceparent``;
- each gateway opens a SERVER span per request under the plugin mount, continuing the caller's
  ``traceparent``, and hands its context to the worker in the request's headers
  (``kernel.gateway.middleware.tracing``, installed by this module's ``kernel_gateway_middleware``);
- the worker runs the plugin's handler in a span that is the child of the gateway's, named after the
  route (``kernel.worker.tracing``).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from kernel.core_services import RootConfig
from kernel.hookspecs import hookimpl
from kernel.hooktypes import GatewayMiddleware
from kernel.settings import TracingSettings, read_settings

__all__ = ["kernel_gateway_middleware", "start_tracing"]

_started: list[bool] = []


def start_tracing(settings: TracingSettings, *, role: str, name: str, plugin_id: str | None = None) -> None:
    """Install this process's tracer provider and instrument aiohttp, once (``settings.enabled`` only)."""
    if _started or not settings.enabled:
        return
    from kernel.tracing.provider import install

    install(settings, role=role, name=name, plugin_id=plugin_id)
    _started.append(True)


@hookimpl
def kernel_gateway_middleware(config: RootConfig) -> Sequence[GatewayMiddleware]:
    """The gateway's span per request, when ``backend.tracing.enabled``."""
    settings = read_settings(config)
    if not settings.tracing.enabled:
        return []
    from kernel.gateway.middleware.tracing import TracingMiddleware

    return [partial(TracingMiddleware, mount=settings.gateway.mount)]

"""``backend.metrics``: where the Prometheus metrics of every process of the kernel are served.

What it drives is in ``kernel.metrics``.

A contract module: it imports the standard library and ``kernel.settings.base``.
"""

from __future__ import annotations

from typing import Literal

from kernel.settings.base import SettingsStruct

__all__ = ["MetricsSettings"]


class MetricsSettings(SettingsStruct, frozen=True):
    """``backend.metrics``: Prometheus/OpenMetrics text of every process of the kernel, aggregated."""

    #: collect and serve metrics (the gateways' request figures, the workers' services, every process)
    enabled: bool = True
    #: ``own``: a listener of their own at ``host``:``port``, open (keep it on loopback or a private
    #: network); ``main``: at ``path`` on the main listener, for the dashboard's operators only
    listener: Literal["own", "main"] = "own"
    #: the address of their own listener
    host: str = "127.0.0.1"
    #: its port (9464, the usual Prometheus exporter port; 0: a free one, logged); taken by another
    #: process: an error at start, or in development (``--dev``) a free one instead, logged
    port: int = 9464
    #: the path they are served at
    path: str = "/metrics"

"""The text a scrape gets: every process's metrics from the shared files, and the supervisor's figures.

``render`` answers in the Prometheus text format, or in OpenMetrics when the scraper asks for it
(``Accept: application/openmetrics-text``), with ``prometheus_client``'s own encoders. Without a
shared directory (a kernel in one process, as the test backend runs it) the process's own
registry is read instead.

From the supervisor's ``Stats`` (its last tick) and the worker table:

- ``kernel_plugin_state{plugin_id, state}``: 1 for the state each plugin is in;
- ``kernel_worker_state{plugin_id, process, state}``: 1 per worker (``unready``'s reason left out);
- ``kernel_worker_restarts_total{plugin_id}``, ``kernel_worker_recycles_total{plugin_id}``;
- ``kernel_log_lines_dropped_total{plugin_id, reason}``: ``rate`` (over the plugin's
  ``backend.logging.rate``) or ``backlog`` (the kernel's output not read fast enough), ``kernel``
  for the kernel's own processes (``kernel.supervisor.logrelay``);
- per process (``kind``: supervisor, gateway, worker; ``process``: its id; ``plugin_id`` of a
  worker): ``kernel_process_resident_memory_bytes``, ``kernel_process_cpu_seconds_total``,
  ``kernel_process_start_time_seconds``, ``kernel_heartbeat_round_trip_seconds``;
- per worker: ``kernel_worker_requests_in_flight`` and ``kernel_worker_requests_started_total``
  (as its heartbeats said).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import nullcontext
from typing import Any

from kernel.hooktypes import GatewayView
from kernel.metrics.files import ENV, reading

OPENMETRICS = "application/openmetrics-text"


class _SupervisorFigures:
    """A ``prometheus_client`` collector of what the gateway knows from the supervisor, read at scrape time."""

    def __init__(self, view: GatewayView) -> None:
        self.view = view

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        plugins = GaugeMetricFamily(
            "kernel_plugin_state", "1 for the state each plugin is in", labels=["plugin_id", "state"]
        )
        for p in sorted(self.view.plugin_states(), key=lambda p: p.id):
            plugins.add_metric([p.id, p.state], 1)
        yield plugins
        stats = self.view.stats()
        if stats is None:
            return
        restarts = CounterMetricFamily(
            "kernel_worker_restarts", "Workers restarted after dying, since the kernel started", labels=["plugin_id"]
        )
        recycles = CounterMetricFamily(
            "kernel_worker_recycles",
            "Workers replaced on purpose (code reload, memory or request limits), since the kernel started",
            labels=["plugin_id"],
        )
        for plugin_id in sorted({p.id for p in self.view.plugin_states()} | set(stats.restarts) | set(stats.recycles)):
            restarts.add_metric([plugin_id], stats.restarts.get(plugin_id, 0))
            recycles.add_metric([plugin_id], stats.recycles.get(plugin_id, 0))
        yield restarts
        yield recycles
        dropped = CounterMetricFamily(
            "kernel_log_lines_dropped",
            "Log lines dropped: over the plugin's log rate, or the kernel's output not read fast enough",
            labels=["plugin_id", "reason"],
        )
        for reason, counts in sorted(stats.log_lines_dropped.items()):
            for plugin_id, n in sorted(counts.items()):
                dropped.add_metric([plugin_id, reason], n)
        yield dropped

        labels = ["kind", "process", "plugin_id"]
        rss = GaugeMetricFamily(
            "kernel_process_resident_memory_bytes", "Resident memory of each process", labels=labels
        )
        cpu = CounterMetricFamily(
            "kernel_process_cpu_seconds", "CPU time (user and system) of each process", labels=labels
        )
        started = GaugeMetricFamily(
            "kernel_process_start_time_seconds", "When each process started, in seconds since the epoch", labels=labels
        )
        rtt = GaugeMetricFamily(
            "kernel_heartbeat_round_trip_seconds",
            "The last heartbeat's round trip between the supervisor and each child",
            labels=labels,
        )
        worker_labels = ["plugin_id", "process"]
        state = GaugeMetricFamily(
            "kernel_worker_state", "1 for the state each worker is in", labels=[*worker_labels, "state"]
        )
        in_flight = GaugeMetricFamily(
            "kernel_worker_requests_in_flight", "Requests and WebSockets each worker runs now", labels=worker_labels
        )
        served = CounterMetricFamily(
            "kernel_worker_requests_started", "Requests and WebSockets each worker started", labels=worker_labels
        )
        for s in stats.processes:
            key = [s.kind, s.ident, s.plugin_id]
            rss.add_metric(key, s.rss_bytes)
            cpu.add_metric(key, s.cpu_seconds)
            started.add_metric(key, s.started_at)
            if s.kind != "supervisor":
                rtt.add_metric(key, s.heartbeat_rtt_ms / 1000)
            if s.kind == "worker":
                state.add_metric([s.plugin_id, s.ident, s.state.split(":", 1)[0]], 1)
                in_flight.add_metric([s.plugin_id, s.ident], s.in_flight)
                served.add_metric([s.plugin_id, s.ident], s.served)
        yield from (rss, cpu, started, rtt, state, in_flight, served)


class _Own:
    """The process's own registry, for a kernel without a shared metrics directory."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client import REGISTRY

        yield from REGISTRY.collect()


def render(view: GatewayView, accept: str = "") -> tuple[bytes, str]:
    """The scrape's body and its content type."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector
    from prometheus_client.openmetrics import exposition as openmetrics

    registry = CollectorRegistry(auto_describe=False)
    directory = os.environ.get(ENV)
    if directory:
        MultiProcessCollector(registry, directory)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Own())
    registry.register(_SupervisorFigures(view))
    with reading(directory) if directory else nullcontext():  # never halfway through a compaction
        if OPENMETRICS in accept:
            return openmetrics.generate_latest(registry), openmetrics.CONTENT_TYPE_LATEST  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST

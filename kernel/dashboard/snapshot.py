"""The dashboard's snapshot: every plugin, worker and process of the kernel, as one JSON-ready dict.

Built from what the gateway answering holds: the worker table (plugins, their states, why a plugin
failed) and the supervisor's latest ``Stats`` (pid, memory, CPU time, load and latency of every
process, restarts per plugin). The table is published on each change, the figures once per
heartbeat tick; a worker the table names but no tick has sampled yet has ``pid: null``.

Keys are camelCase, as the reference system's JSON APIs. CPU is given as seconds used so far
(``cpuSeconds``): a reader computes a percentage from two snapshots (``sampledAt`` apart), as the
page and ``kernel status`` do. Recent errors are the answering gateway's own (each gateway
process keeps its last ones).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kernel.protocol import PluginState, ProcessSample, Stats


def process(sample: ProcessSample) -> dict[str, Any]:
    """One process's figures."""
    return {
        "id": sample.ident,
        "pid": sample.pid,
        "state": sample.state,
        "startedAt": sample.started_at,
        "rssBytes": sample.rss_bytes,
        "cpuSeconds": sample.cpu_seconds,
        "heartbeatRttMs": sample.heartbeat_rtt_ms,
        "served": sample.served,
        "inFlight": sample.in_flight,
        "rps": sample.rps,
        "p50Ms": sample.p50_ms,
        "p99Ms": sample.p99_ms,
    }


def _unsampled(ident: str, state: str) -> dict[str, Any]:
    """A worker the table names that no tick has sampled yet (just started)."""
    return {
        "id": ident,
        "pid": None,
        "state": state,
        "startedAt": None,
        "rssBytes": 0,
        "cpuSeconds": 0.0,
        "heartbeatRttMs": 0.0,
        "served": 0,
        "inFlight": 0,
        "rps": 0.0,
        "p50Ms": 0.0,
        "p99Ms": 0.0,
    }


def _workers(plugin: PluginState, samples: Mapping[str, ProcessSample]) -> list[dict[str, Any]]:
    """The plugin's workers: those of the table (its state wins: it is the fresher), then any sampled
    worker the table no longer names (one being replaced or stopped)."""
    out: list[dict[str, Any]] = []
    named = dict(plugin.worker_states)
    for ident in plugin.workers:
        named.setdefault(ident, "starting")
    for ident, state in named.items():
        sample = samples.get(ident)
        out.append({**process(sample), "state": state} if sample is not None else _unsampled(ident, state))
    out.extend(process(s) for ident, s in samples.items() if ident not in named)
    return out


def _error(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "at": entry.get("at"),
        "method": entry.get("method"),
        "path": entry.get("path"),
        "status": entry.get("status"),
        "pluginId": entry.get("plugin_id") or None,
        "requestId": entry.get("request_id") or None,
    }


def build_snapshot(
    states: Iterable[PluginState],
    stats: Stats | None,
    errors: Sequence[Mapping[str, Any]],
    *,
    version: str,
    mount: str,
    now: float,
    gateway_pid: int,
) -> dict[str, Any]:
    """The snapshot the dashboard and ``kernel status`` show (see the module doc)."""
    samples = stats.processes if stats is not None else []
    by_plugin: dict[str, dict[str, ProcessSample]] = {}
    for s in samples:
        if s.kind == "worker":
            by_plugin.setdefault(s.plugin_id, {})[s.ident] = s
    restarts = stats.restarts if stats is not None else {}
    recycles = stats.recycles if stats is not None else {}
    plugins = [
        {
            "id": p.id,
            "state": p.state,
            "reason": p.reason or None,
            "distribution": p.distribution,
            "version": p.version,
            "restarts": restarts.get(p.id, 0),
            "recycles": recycles.get(p.id, 0),
            "workers": _workers(p, by_plugin.get(p.id, {})),
            "isolation": dict(p.isolation),
        }
        for p in sorted(states, key=lambda p: p.id)
    ]
    supervisor = next((s for s in samples if s.kind == "supervisor"), None)
    started_at = supervisor.started_at if supervisor is not None else None
    return {
        "kernel": {
            "version": version,
            "startedAt": started_at,
            "uptimeSeconds": round(now - started_at, 3) if started_at else None,
            "mount": mount,
            "answeredBy": gateway_pid,
        },
        "now": now,
        # when the supervisor took the figures below; null before its first tick
        "sampledAt": stats.at if stats is not None else None,
        "plugins": plugins,
        "failed": [{"id": p["id"], "reason": p["reason"] or "failed"} for p in plugins if p["state"] == "failed"],
        "supervisor": process(supervisor) if supervisor is not None else None,
        "gateways": sorted((process(s) for s in samples if s.kind == "gateway"), key=lambda g: str(g["id"])),
        "recentErrors": [_error(e) for e in errors],
    }

"""What ``kernel serve`` says when it starts, or cannot: the lines an operator reads first."""

from __future__ import annotations

import socket

from kernel.settings import Settings
from kernel.supervisor.remote import RemoteJoins


def listening_line(settings: Settings, listener: socket.socket, plugin_ids: list[str]) -> str:
    """Where the kernel listens and what it serves (``backend.listen.port`` 0: the port it got)."""
    return "kernel listening on %s://%s:%d with %d plugin(s): %s" % (  # noqa: UP031
        "https" if settings.edge.https is not None else "http",
        settings.listen.host,
        listener.getsockname()[1],
        len(plugin_ids),
        ", ".join(plugin_ids) or "none",
    )


def joins_line(joins: RemoteJoins) -> str:
    """Where remote workers join (``backend.workers.remote``), and how many keys may."""
    return (
        f"remote workers join on {joins.settings.listen} (CurveZMQ; gateways on the ports after it), "
        f"allowedKeys {joins.allowed.directory}: {len(joins.allowed.keys)} key(s)"
    )


def metrics_line(settings: Settings, listener: socket.socket) -> str:
    host, port = listener.getsockname()[:2]
    return f"metrics on http://{host}:{port}{settings.metrics.path}"


def startup_failure_message(failures: list[str]) -> str:
    lines = ["kernel: cannot start:"]
    lines += [f"  - {f}" for f in failures]
    lines.append("Fix the package, uninstall it, or set backend.startup.plugins.<id>.onPluginBootFailure: continue")
    return "\n".join(lines)

"""The metrics' own listener (``backend.metrics.listener: own``), and what happens when its port is taken."""

from __future__ import annotations

import errno
import logging
import socket

from kernel.metrics.files import make_directory
from kernel.settings.metrics import MetricsSettings

log = logging.getLogger("kernel.supervisor")


def open_metrics_listener(host: str, port: int, *, dev: bool) -> socket.socket | None:
    """The metrics' own listener at ``host``:``port``; ``None`` when it cannot be had (the reason logged).

    A port another process holds (a second kernel on the host, the test suite's beside a developer's)
    is an error naming the setting, except in development (``--dev``, ``KERNEL_ENV=development``):
    there a free port is taken instead, and logged, so two development kernels run side by side. In
    production a scraper is pointed at one port: moving silently would lose every figure.
    """
    try:
        return socket.create_server((host, port), backlog=128)
    except OSError as exc:
        if dev and exc.errno == errno.EADDRINUSE and port != 0:
            fallback = socket.create_server((host, 0), backlog=128)
            log.warning(
                "metrics port %s:%d is taken (backend.metrics.port); in development, using the free port %d instead",
                host,
                port,
                fallback.getsockname()[1],
            )
            return fallback
        hint = "; choose another backend.metrics.port (0: a free one), or run with --dev to fall back to a free port"
        log.error(
            "cannot listen on %s:%d for metrics (backend.metrics.port): %s%s",
            host,
            port,
            exc.strerror,
            hint if exc.errno == errno.EADDRINUSE else "",
        )
        return None


def open_metrics(metrics: MetricsSettings, *, dev: bool) -> tuple[bool, socket.socket | None, str]:
    """``backend.metrics``: the shared directory, and the metrics' own listener if it has one (inherited by
    the gateways); false when the listener cannot be had (the reason logged)."""
    if not metrics.enabled:
        return True, None, ""
    listener = None
    if metrics.listener == "own":
        listener = open_metrics_listener(metrics.host, metrics.port, dev=dev)
        if listener is None:
            return False, None, ""
        listener.set_inheritable(True)
    return True, listener, make_directory()

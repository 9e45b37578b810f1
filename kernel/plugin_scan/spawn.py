"""Starting the discovery child. Light on imports (the standard library only), so the ``kernel``
command can start it first thing and import the rest of itself while the child works."""

from __future__ import annotations

import os
import subprocess
import sys

__all__ = ["DISCOVERY_TIMEOUT", "TIMEOUT_ENV", "spawn", "start", "step_timeout"]

#: seconds one step of the discovery (one package's import, hook or config check) may take
DISCOVERY_TIMEOUT = 60.0
#: the environment variable that overrides it (read before any config file is: discovery comes first)
TIMEOUT_ENV = "KERNEL_DISCOVERY_TIMEOUT"


def step_timeout() -> float:
    """``KERNEL_DISCOVERY_TIMEOUT`` if set to a positive number of seconds, else ``DISCOVERY_TIMEOUT``."""
    raw = os.environ.get(TIMEOUT_ENV, "")
    try:
        value = float(raw) if raw else DISCOVERY_TIMEOUT
    except ValueError:
        value = 0.0
    if 0 < value < float("inf"):
        return value
    if raw not in _warned:  # once per command, however often it is asked
        _warned.add(raw)
        import logging

        logging.getLogger("kernel").warning(
            "%s=%r is not a positive number of seconds; using %gs", TIMEOUT_ENV, raw, DISCOVERY_TIMEOUT
        )
    return DISCOVERY_TIMEOUT


_warned: set[str] = set()


def spawn(request: bytes) -> subprocess.Popen[bytes]:
    """Start ``python -m kernel.plugin_scan`` and hand it ``request`` (a ``report.Request``, JSON) on its stdin."""
    proc = subprocess.Popen([sys.executable, "-m", "kernel.plugin_scan"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None
    try:
        proc.stdin.write(request)  # read whole by the child before it does anything else
        proc.stdin.close()
    except OSError:  # it died at once: its exit code says how
        pass
    return proc


def start() -> subprocess.Popen[bytes]:
    """The first run: every package, no config (what each ``kernel`` command starts with)."""
    return spawn(b'{"parent": %d, "timeout": %r}' % (os.getpid(), step_timeout()))

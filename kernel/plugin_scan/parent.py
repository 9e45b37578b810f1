"""The ``kernel`` command's side of discovery: run the child, watch it, blame and re-run, load the providers.

``discover`` starts ``python -m kernel.plugin_scan`` and reads its frames. Each ``StepFrame``
names the package code about to run and restarts the clock: when the child exits, is killed
by a signal, or takes longer than the step timeout (``KERNEL_DISCOVERY_TIMEOUT`` seconds,
default ``DISCOVERY_TIMEOUT``), the last step's entry point gets a ``LoadFailure`` and the
discovery runs again without it. Each re-run leaves one more entry point out, so it ends.

``find_installed`` is what the command holds afterwards: the report as data, and a plugin
manager with only the hook providers it names (the kernel's own features and the packages
implementing hooks: trusted extensions, imported here). No ``BackendPlugin`` or
``BackendModule`` entry point is ever imported in this process.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import msgspec
import pluggy

from kernel.config import Config
from kernel.errors import BootError
from kernel.plugin_scan.report import Report, Request, decode_frame
from kernel.plugin_scan.spawn import spawn, start, step_timeout
from kernel.registry import (
    ENTRY_POINT_GROUP,
    KERNEL_DISTRIBUTION,
    LoadFailure,
    PluginEntry,
    Step,
    ep_key,
    load_registry,
)

__all__ = ["Installed", "discover", "find_installed"]

log = logging.getLogger("kernel")

#: a step taking longer than this is logged as slow (once), so a long wait is never silent
SLOW_STEP = 10.0
#: how often the watcher looks whether the child is still alive while its stdout stays open
_POLL = 0.25


def discover(
    config: Config | None = None,
    *,
    timeout: float | None = None,
    first: subprocess.Popen[bytes] | None = None,
    lost: Mapping[str, LoadFailure] | None = None,
) -> Report:
    """Every installed package, found in a child process; raises ``BootError`` when no package is to blame.

    ``first``: a child already started by ``spawn.start()`` (no config), used for the first run.
    ``lost``: entry points an earlier discovery lost (``Report.lost``): left out from the start.
    """
    limit = step_timeout() if timeout is None else timeout
    snapshot = config.snapshot() if config is not None else None
    gone = dict(lost or {})  # entry points that killed or hung a run, by ep_key
    while True:
        if first is None:
            first = spawn(msgspec.json.encode(Request(os.getpid(), sorted(gone), snapshot, limit)))
        outcome = _finish(first, limit)
        first = None
        if isinstance(outcome, Report):
            return msgspec.structs.replace(outcome, failures=[*gone.values(), *outcome.failures], lost=gone)
        step, how = outcome
        if not step.entry_point or step.entry_point in gone:
            raise BootError(f"the installed packages could not be discovered: {step.what} {how}")
        failure = LoadFailure(step.name, step.distribution, f"{step.what} {how}")
        log.info("%s; discovering the others without it", failure)
        gone[step.entry_point] = failure


_START = Step("", "", "", "the start of the discovery child")


def _finish(proc: subprocess.Popen[bytes], timeout: float) -> Report | tuple[Step, str]:
    """Watch one run to its end: the report, or the step the child was in when it died or ran out of time."""
    assert proc.stdout is not None
    outcome: Report | tuple[Step, str] | None = None
    try:
        outcome = _Watch(proc, timeout).run()
        return outcome
    finally:
        if isinstance(outcome, Report):  # it is exiting: give it a moment
            try:
                proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                pass
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()


class _Watch:
    """Reads the child's frames, restarting the clock at each step, until a report, an exit or a timeout."""

    def __init__(self, proc: subprocess.Popen[bytes], timeout: float) -> None:
        assert proc.stdout is not None
        self.proc = proc
        self.fd = proc.stdout.fileno()
        self.timeout = timeout
        self.step = _START
        self.started = time.monotonic()
        self.warned = False
        self.pending = b""

    def run(self) -> Report | tuple[Step, str]:
        while True:
            waited = time.monotonic() - self.started
            if waited >= self.timeout:
                return self._timed_out()
            if not self.warned and waited >= SLOW_STEP:
                self.warned = True
                log.warning("discovery: %s running for %gs (limit %gs)", _describe(self.step), SLOW_STEP, self.timeout)
            ready, _, _ = select.select([self.fd], [], [], min(_POLL, self.timeout - waited))
            if ready:
                chunk = os.read(self.fd, 1 << 16)
                if chunk:
                    found = self._frames(chunk)
                    if found is not None:
                        return found
                    continue
                try:  # end of output: the child ended (or closed it)
                    return self.step, _how(self.proc.wait(timeout=max(0.05, self.timeout - waited)))
                except subprocess.TimeoutExpired:
                    return self._timed_out()
            code = self.proc.poll()
            if code is not None:  # ended, while a process it started keeps its stdout open
                while select.select([self.fd], [], [], 0)[0] and (chunk := os.read(self.fd, 1 << 16)):
                    found = self._frames(chunk)
                    if found is not None:
                        return found
                return self.step, _how(code)

    def _frames(self, chunk: bytes) -> Report | tuple[Step, str] | None:
        self.pending += chunk
        *lines, self.pending = self.pending.split(b"\n")
        for line in lines:
            try:
                frame = decode_frame(line)
            except msgspec.DecodeError:
                return self.step, "wrote something other than a frame to the discovery channel"
            if isinstance(frame, Report):
                return frame
            self.step, self.started, self.warned = frame.step, time.monotonic(), False
        return None

    def _timed_out(self) -> tuple[Step, str]:
        return self.step, f"did not finish within {self.timeout:g}s (the discovery child was killed)"


def _how(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return f"was killed by signal {name}"
    return f"exited with code {code}" + (" before the discovery finished" if code == 0 else "")


def _describe(step: Step) -> str:
    if not step.name:
        return step.what
    return f"{step.what} (entry point '{step.name}' of package '{step.distribution}')"


@dataclass
class Installed:
    """What the ``kernel`` command knows of the installed packages: data, and the hook providers it loaded."""

    plugins: dict[str, PluginEntry]
    failures: list[LoadFailure]
    warnings: list[str]
    providers: list[str]
    provider_eps: list[str]
    manager: pluggy.PluginManager
    #: plugins declaring a ``config_schema``, and the config paths those schemas mark secret
    schemas: list[str] = field(default_factory=list)
    secret_paths: list[str] = field(default_factory=list)
    #: plugin id -> the JSON Schema of its ``config_schema``
    json_schemas: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: entry points that killed or hung the discovery (``Report.lost``): a later discovery skips them
    lost: dict[str, LoadFailure] = field(default_factory=dict)


def find_installed(first: subprocess.Popen[bytes] | None = None) -> Installed:
    """Discover in a child, log its warnings once, then import the hook providers it found (and only them).

    The kernel's own entry points (package ``kernel``: its built-in features, never a plugin) are
    imported while the child works; the other packages' providers once the report names them.
    ``first``: the discovery child the command started first thing (``spawn.start()``), if it did.
    """
    if first is None:
        first = start()
    own = [
        ep_key(ep) for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.dist and ep.dist.name == KERNEL_DISTRIBUTION
    ]
    here = load_registry(only=own, services=False, log_warnings=False)
    report = discover(first=first)
    for warning in report.warnings:
        log.warning("%s", warning)
    assert here.manager is not None
    kept = [(name, key) for name, key in zip(here.providers, here.provider_eps) if key in report.provider_eps]
    for name, key in zip(here.providers, here.provider_eps):
        if key not in report.provider_eps:  # the child lost it: nothing else will load it either
            here.manager.unregister(name=name)
    theirs = [key for key in report.provider_eps if key not in own]
    more = load_registry(only=theirs, services=False, log_warnings=False, manager=here.manager)
    return Installed(
        plugins={p.id: p for p in report.plugins},
        failures=[*report.failures, *(f for f in [*here.failures, *more.failures] if f not in report.failures)],
        warnings=report.warnings,
        providers=[*(name for name, _ in kept), *more.providers],
        provider_eps=[*(key for _, key in kept), *more.provider_eps],
        manager=here.manager,
        schemas=report.schemas,
        secret_paths=report.secret_paths,
        json_schemas=report.json_schemas,
        lost=report.lost,
    )

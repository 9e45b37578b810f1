"""How the supervisor stops its children: the before-shutdown hooks, then gateways, workers, the rest.

The order is the reference system's: every ready worker runs its ``before_shutdown`` hooks while
requests still flow (readiness already answers 503); then the gateways drain (``Shutdown`` with the
grace) and exit; then the workers stop (their ``shutdown`` hooks); whatever is still running gets
SIGTERM, then SIGKILL after ``backend.workers.killTimeout``. ``exit_bound`` is the longest this takes
from SIGTERM, the figure Kubernetes' ``terminationGracePeriodSeconds`` must exceed (docs/scaling.md).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Iterable

from kernel.protocol import BeforeShutdown, Shutdown
from kernel.settings import Settings
from kernel.supervisor.children import Child
from kernel.supervisor.control import ControlChannel
from kernel.supervisor.host import Changes

log = logging.getLogger("kernel")
#: seconds the gateways get beyond the drain to exit, and the workers to stop, before SIGTERM
GATEWAY_EXIT = 2.0
WORKER_EXIT = 2.0


def exit_bound(settings: Settings) -> float:
    """The most seconds from SIGTERM to exit: the delay, the drain, the workers' stop, the last kill.

    Kubernetes' ``terminationGracePeriodSeconds`` must be longer (docs/scaling.md).
    """
    w = settings.workers
    return settings.lifecycle.server_shutdown_delay + w.shutdown_grace + GATEWAY_EXIT + WORKER_EXIT + w.kill_timeout


def announce_leaving(settings: Settings, sig: int) -> None:
    """The log line of a signal that starts ``backend.lifecycle.serverShutdownDelay``."""
    log.info(
        "%s: readiness is 503; serving %.1fs more (backend.lifecycle.serverShutdownDelay), then draining "
        "for up to %.1fs (backend.workers.shutdownGrace); exiting within %.0fs",
        signal.Signals(sig).name,
        settings.lifecycle.server_shutdown_delay,
        settings.workers.shutdown_grace,
        exit_bound(settings),
    )


async def before_shutdown(children: Iterable[Child], control: ControlChannel, changes: Changes, timeout: float) -> None:
    """Each ready worker runs its ``before_shutdown`` hooks, as the reference system runs them: before
    the server stops taking requests. Waits for every worker's answer, at most ``timeout`` seconds."""
    workers = [c for c in children if c.kind == "worker" and c.ready]
    for c in workers:
        control.send(c, BeforeShutdown())

    def done() -> bool:
        return all(c.before_shutdown_done or c.process.exit_code() is not None for c in workers)

    if not await changes.wait_for(done, timeout):
        late = ", ".join(c.ident for c in workers if not c.before_shutdown_done)
        log.warning("before-shutdown hooks still running after %.1fs (%s); stopping anyway", timeout, late)


async def stop_children(children: dict[str, Child], control: ControlChannel, settings: Settings, grace: float) -> None:
    """The gateways drain for ``grace`` seconds and exit, then the workers stop, then the rest is forced."""
    gateways = [c for c in children.values() if c.kind == "gateway"]
    for c in gateways:
        control.send(c, Shutdown(grace))
    await wait_exit(gateways, grace + GATEWAY_EXIT)
    workers = [c for c in children.values() if c.kind == "worker"]
    for c in workers:
        control.send(c, Shutdown(1.0))
    await wait_exit(workers, WORKER_EXIT)
    remaining = [c for c in children.values() if c.process.exit_code() is None]
    for c in remaining:
        c.process.terminate()
    await wait_exit(remaining, settings.workers.kill_timeout)
    for c in children.values():
        if c.process.exit_code() is None:
            log.error("%s %s ignored SIGTERM; killing it", c.kind, c.ident)
            c.process.kill()
            c.process.wait()


async def wait_exit(children: list[Child], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(c.process.exit_code() is None for c in children):
        await asyncio.sleep(0.05)

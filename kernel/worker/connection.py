"""A worker's links: one to every gateway (requests), one to the supervisor (control, heartbeats).

The worker greets every gateway and waits for each to answer, then greets the
supervisor with its auth policies: from then on it is ready. Heartbeats go
both ways; a worker whose supervisor is silent, or whose parent changed,
exits. A frame it cannot read, or a refusal, stops it: it cannot trust the
link any more.

A remote worker (``kernel.worker.remote``) runs the same code with a ``RemoteLink``: its sockets are
CURVE clients over ``tcp://``, a supervisor silent for ``heartbeatTimeout`` means a cut network (it
joins again rather than exiting), and when told to stop it says so back (``Shutdown``) once drained; on SIGTERM it first asks to
leave (``Shutdown`` with a grace), so that no gateway sends it a new request while it drains.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import zmq

from kernel.errors import ProtocolError
from kernel.launch import WorkerSpec
from kernel.protocol import (
    AuthPolicy,
    BeforeShutdown,
    ConfigUpdate,
    Error,
    Heartbeat,
    Hello,
    Message,
    Policies,
    Shutdown,
    encode,
)
from kernel.transport.connection import Channel, hello, hello_refusal
from kernel.transport.sockets import dealer
from kernel.worker.dispatch import Dispatcher

log = logging.getLogger("kernel.worker")
READINESS_INTERVAL = 1.0
LEAVE_LINGER_MS = 1000
#: seconds beyond the heartbeat timeout a leaving remote worker waits for the supervisor's word
LEAVE_WAIT = 5.0


@dataclass
class RemoteLink:
    """How a remote worker's links differ: ``secure`` makes a socket a CURVE client, ``on_lost`` runs when
    the supervisor goes silent (instead of exiting), ``told_to_stop`` says the supervisor asked it to stop,
    ``leaving`` that it asked to leave itself (SIGTERM)."""

    secure: Callable[[zmq.Socket[bytes]], None]
    on_lost: Callable[[], None]
    told_to_stop: bool = False
    leaving: bool = False


class WorkerConnection:
    """Links the dispatcher to the gateways and the worker to its supervisor."""

    def __init__(
        self,
        spec: WorkerSpec,
        dispatcher: Dispatcher,
        *,
        policies: list[AuthPolicy],
        on_config: Callable[[ConfigUpdate], None],
        health: Any | None = None,
        before_shutdown: Callable[[], Awaitable[None]] | None = None,
        remote: RemoteLink | None = None,
    ) -> None:
        self.spec = spec
        self.remote = remote
        #: the plugin's before-shutdown hooks, run once at the supervisor's ``BeforeShutdown`` (answered when done)
        self.before_shutdown = before_shutdown
        self._before_shutdown_task: asyncio.Task[None] | None = None
        self.dispatcher = dispatcher
        self.policies = policies
        self.on_config = on_config
        self.health = health
        self.gateways: list[Channel] = []
        self.control: Channel | None = None
        self._acked: set[int] = set()
        self._all_acked = asyncio.Event()
        self._stop = asyncio.Event()
        self._supervisor_seen = time.monotonic()
        self._fatal: str | None = None
        self._unready = ""
        self._greeted = False

    def connect(self, ctx: zmq.Context[zmq.Socket[bytes]]) -> None:
        spec = self.spec
        greeting = hello("worker", plugin_id=spec.plugin_id, worker_id=spec.worker_id)
        secure = self.remote.secure if self.remote is not None else None
        for index, endpoint in enumerate(spec.gateways):
            sock = dealer(ctx, endpoint, spec.route or spec.worker_id, unbounded=True, secure=secure)
            channel = Channel(
                sock, self._gateway_handler(index), routed=False, name=f"{spec.worker_id} -> gateway {index}",
                on_bad_frame=self._bad_frame,
            )  # fmt: skip
            self.gateways.append(channel)
            channel.send(greeting)
        if not spec.gateways:
            self._all_acked.set()
        sock = dealer(ctx, spec.control, spec.worker_id, secure=secure)
        self.control = Channel(
            sock, self._on_control, routed=False, name=f"{spec.worker_id} control", on_bad_frame=self._bad_frame
        )

    def close(self) -> None:
        for channel in self.gateways:
            channel.close()
        if self.control is not None:  # a remote worker's goodbye (``leave``) may still be on its way
            self.control.close(linger=LEAVE_LINGER_MS if self.remote is not None else 0)

    def _gateway_handler(self, index: int) -> Callable[[bytes, Message, list[bytes]], None]:
        on_message = self.dispatcher.on_message

        def handle(peer: bytes, msg: Message, frames: list[bytes]) -> None:
            if type(msg) is Hello:
                refused = hello_refusal(msg, self.spec.worker_id)
                if refused is not None:
                    self._die(refused.message)
                    return
                self._acked.add(index)
                if len(self._acked) == len(self.gateways):
                    self._all_acked.set()
            elif type(msg) is Error and msg.stream == 0:
                self._die(f"gateway {index} refused this worker: {msg.message}")
            else:
                on_message(index, msg, frames, self.gateways[index].send)

        return handle

    def _beat(self, echo: float = 0.0) -> Heartbeat:
        """This worker's heartbeat; a periodic one (no ``echo``) closes an interval of handler times."""
        p50, p99 = self.dispatcher.latency.percentiles() if not echo else (0.0, 0.0)
        d = self.dispatcher
        return Heartbeat(time.time(), not self._unready, self._unready, d.served, len(d.streams), p50, p99, echo)

    def _on_control(self, peer: bytes, msg: Message, frames: list[bytes]) -> None:
        self._supervisor_seen = time.monotonic()
        if type(msg) is Heartbeat and msg.sent_at and self.control is not None:
            self.control.offer(encode(self._beat(echo=msg.sent_at)))  # the supervisor times the round trip
        elif type(msg) is Shutdown:
            if self.remote is not None:
                self.remote.told_to_stop = True
            self._stop.set()
        elif type(msg) is BeforeShutdown:
            if self._before_shutdown_task is None:
                self._before_shutdown_task = asyncio.get_running_loop().create_task(self._run_before_shutdown())
        elif type(msg) is ConfigUpdate:
            self.on_config(msg)
        elif type(msg) is Error:
            self._die(f"supervisor refused this worker: {msg.message}")

    async def _run_before_shutdown(self) -> None:
        if self.before_shutdown is not None:
            await self.before_shutdown()
        if self.control is not None:
            self.control.send(encode(BeforeShutdown()))

    async def finish_before_shutdown(self) -> None:
        """Run the before-shutdown hooks now if the supervisor never asked (a recycled worker), else wait for them."""
        if self._before_shutdown_task is None:
            self._before_shutdown_task = asyncio.get_running_loop().create_task(self._run_before_shutdown())
        await self._before_shutdown_task

    def update_policies(self, policies: list[AuthPolicy]) -> None:
        """The plugin changed its auth policies: the supervisor republishes them to the gateways."""
        self.policies = policies
        if self._greeted and self.control is not None:  # before the Hello, the Hello carries them
            self.control.send(encode(Policies(policies)))

    def _on_sigterm(self) -> None:
        """Stop. A remote worker first asks the supervisor to take it out of every gateway's table: its
        ``Shutdown`` comes once they route without it, then it drains (a second SIGTERM: at once)."""
        remote, control = self.remote, self.control
        if remote is None or remote.leaving or control is None or not self._greeted:
            self._stop.set()
            return
        remote.leaving = True
        w = self.spec.settings.workers
        control.offer(Shutdown(w.shutdown_grace))
        asyncio.get_running_loop().call_later(w.heartbeat_timeout + LEAVE_WAIT, self._stop.set)  # kernel gone

    def leave(self) -> None:
        """A remote worker, drained: tell the supervisor it leaves (it counts as gone at once)."""
        if self.control is not None:
            self.control.offer(Shutdown(0.0))

    def _bad_frame(self, peer: bytes, exc: ProtocolError) -> None:
        self._die(str(exc))

    def _die(self, reason: str) -> None:
        log.error("worker %s of plugin '%s' stops: %s", self.spec.worker_id, self.spec.plugin_id, reason)
        self._fatal = reason
        self._stop.set()

    async def serve(self) -> bool:
        """Join the gateways and the supervisor, serve until told to stop; false after a fatal error."""
        spec = self.spec
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, self._on_sigterm)
        try:
            await asyncio.wait_for(self._all_acked.wait(), spec.settings.workers.heartbeat_timeout * 2)
        except TimeoutError:
            log.error("plugin '%s': no answer from the gateways", spec.plugin_id)
            return False
        assert self.control is not None
        self.control.send(
            hello(
                "worker", plugin_id=spec.plugin_id, worker_id=spec.worker_id, policies=self.policies, secret=spec.secret
            )
        )
        self._greeted = True
        beat = asyncio.get_running_loop().create_task(self._heartbeat())
        await self._stop.wait()
        beat.cancel()
        return self._fatal is None

    async def _readiness(self) -> None:
        """Run the plugin's own readiness checks (if it asked for ``core.health``) once a second."""
        if self.health is None:
            return
        while True:
            failing = await self.health.failing_checks()
            self._unready = ("failing readiness checks: " + ", ".join(failing)) if failing else ""
            await asyncio.sleep(READINESS_INTERVAL)

    async def _heartbeat(self) -> None:
        w = self.spec.settings.workers
        parent = os.getppid()
        self._supervisor_seen = time.monotonic()  # the clock starts now, not before a slow boot
        assert self.control is not None
        loop = asyncio.get_running_loop()
        checks = loop.create_task(self._readiness())
        while True:
            self.control.offer(encode(self._beat()))
            await asyncio.sleep(w.heartbeat_interval)
            if checks.done() and not checks.cancelled() and checks.exception() is not None:
                log.error("readiness checks of plugin '%s' crashed: %r", self.spec.plugin_id, checks.exception())
                checks = loop.create_task(self._readiness())
            silent = time.monotonic() - self._supervisor_seen
            if self.remote is not None and silent > w.heartbeat_timeout:
                log.error("plugin '%s': kernel silent for %.1fs; joining again", self.spec.plugin_id, silent)
                self.remote.on_lost()
            if silent > w.heartbeat_timeout or os.getppid() != parent:
                log.error("plugin '%s': supervisor silent for %.1fs, exiting", self.spec.plugin_id, silent)
                os._exit(1)

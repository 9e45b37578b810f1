"""The worker process: boots one plugin with its services, then serves requests from gateways."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import msgspec
import zmq

from kernel.container import ServiceContainer
from kernel.core_services import RootConfig, core_services
from kernel.plugin import BackendPlugin
from kernel.protocol import (
    PROTOCOL_VERSION,
    Credit,
    End,
    Error,
    Heartbeat,
    Hello,
    ProtocolError,
    RequestBody,
    RequestHead,
    Shutdown,
    check_hello,
    decode,
    encode,
)
from kernel.registry import load_registry
from kernel.worker.router import PluginRouter
from kernel.worker.streams import Stream, error_response
from kernel.zmqio import LoopSocket

log = logging.getLogger("kernel.worker")
PRINCIPAL_KEY = "kernel.principal"


class WorkerSpec(msgspec.Struct, frozen=True):
    """What the supervisor tells a worker it starts (passed in the environment)."""

    plugin_id: str
    worker_id: str
    entry_points: list[str]
    config_paths: list[str]
    control: str
    gateways: list[str]
    mount: str = "/api"
    heartbeat_interval: float = 0.5
    heartbeat_timeout: float = 5.0
    dev: bool = False
    grace: float = 10.0


Prepare = Callable[[RootConfig, BackendPlugin], list[str]]


class BootError(Exception):
    """The plugin could not be started in this worker."""


class _Meta:
    def __init__(self, plugin_id: str) -> None:
        self.plugin_id = plugin_id


class Worker:
    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.root_path = f"{spec.mount}/{spec.plugin_id}"
        self.app: Any = None
        self.router = PluginRouter(spec.plugin_id)
        self.container: ServiceContainer | None = None
        self.streams: dict[tuple[int, int], Stream] = {}
        self.gateways: list[LoopSocket] = []
        self.control: LoopSocket | None = None
        self._acked: set[int] = set()
        self._all_acked = asyncio.Event()
        self._stop = asyncio.Event()
        self._supervisor_seen = time.monotonic()
        self._fatal: str | None = None
        self._unready = ""

    # -- boot ------------------------------------------------------------------
    async def boot(self, config: RootConfig, prepare: Prepare | None = None) -> None:
        """Load the plugin, build its services, run its init; ``prepare`` runs once it is known."""
        spec = self.spec
        reg = load_registry(only=spec.entry_points)
        if reg.failures:
            raise BootError("; ".join(str(f) for f in reg.failures))
        entry = reg.plugins.get(spec.plugin_id)
        if entry is None:
            raise BootError(f"plugin '{spec.plugin_id}' is not installed")
        if prepare is not None:
            problems = prepare(config, entry.plugin)
            if problems:
                raise BootError("; ".join(problems))
        self.container = ServiceContainer(
            reg.factories,
            spec.plugin_id,
            preset={
                core_services.plugin_metadata.id: _Meta(spec.plugin_id),
                core_services.http_router.id: self.router,
            },
            root_instances={core_services.root_config.id: config},
        )
        plugin = entry.plugin
        deps = await self.container.resolve(plugin.deps)
        assert plugin.init_fn is not None
        result = plugin.init_fn(**deps)
        if asyncio.iscoroutine(result):
            await result
        assert reg.manager is not None
        reg.manager.hook.kernel_register_routes(plugin_id=spec.plugin_id, router=self.router)
        self.app = self.router.build()
        await self._lifecycle("startup")

    async def _lifecycle(self, phase: str) -> None:
        if self.container is None:
            return
        for ref in (core_services.lifecycle, core_services.root_lifecycle):
            try:
                hooks = await self.container.get(ref)
            except Exception:  # lifecycle not provided: nothing to run
                continue
            run = getattr(hooks, "run", None)
            if run is not None:
                await run(phase)

    # -- sockets ---------------------------------------------------------------
    def connect(self, ctx: zmq.Context[Any]) -> None:
        ident = self.spec.worker_id.encode()
        hello = encode(Hello(PROTOCOL_VERSION, "worker", self.spec.plugin_id, self.spec.worker_id, os.getpid()))
        for index, endpoint in enumerate(self.spec.gateways):
            sock = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.ROUTING_ID, ident)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDHWM, 0)
            sock.setsockopt(zmq.RCVHWM, 0)
            sock.connect(endpoint)
            ls = LoopSocket(sock, self._gateway_handler(index))
            self.gateways.append(ls)
            ls.send([hello])
        if not self.spec.gateways:
            self._all_acked.set()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.ROUTING_ID, ident)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.spec.control)
        self.control = LoopSocket(sock, self._on_control)

    def _gateway_handler(self, index: int) -> Any:
        streams = self.streams

        def on_message(frames: list[bytes]) -> None:
            try:
                msg = decode(frames[0])
            except ProtocolError as exc:
                self._die(str(exc))
                return
            if type(msg) is RequestHead:
                self._start(index, msg)
            elif type(msg) is RequestBody:
                s = streams.get((index, msg.stream))
                if s is not None:
                    s.feed(frames[-1], msg.more)
            elif type(msg) is Credit:
                s = streams.get((index, msg.stream))
                if s is not None:
                    s.grant(msg.chunks)
            elif type(msg) is End:
                s = streams.get((index, msg.stream))
                if s is not None:
                    s.disconnect()
            elif type(msg) is Hello:
                try:
                    check_hello(msg)
                except ProtocolError as exc:
                    self._die(str(exc))
                    return
                self._acked.add(index)
                if len(self._acked) == len(self.gateways):
                    self._all_acked.set()
            elif type(msg) is Error and msg.stream == 0:
                self._die(f"gateway {index} refused this worker: {msg.message}")

        return on_message

    def _on_control(self, frames: list[bytes]) -> None:
        try:
            msg = decode(frames[-1])
        except ProtocolError as exc:
            self._die(str(exc))
            return
        self._supervisor_seen = time.monotonic()
        if type(msg) is Shutdown:
            self._stop.set()
        elif type(msg) is Error:
            self._die(f"supervisor refused this worker: {msg.message}")

    def _die(self, reason: str) -> None:
        log.error("worker %s of plugin '%s' stops: %s", self.spec.worker_id, self.spec.plugin_id, reason)
        self._fatal = reason
        self._stop.set()

    # -- requests ----------------------------------------------------------------
    def _start(self, index: int, head: RequestHead) -> None:
        stream = Stream(head, self.gateways[index].send)
        key = (index, head.stream)
        self.streams[key] = stream
        stream.task = asyncio.get_running_loop().create_task(self._handle(key, stream))

    async def _handle(self, key: tuple[int, int], stream: Stream) -> None:
        head = stream.head
        try:
            await self.app(stream.scope(self.root_path, PRINCIPAL_KEY, self.app), stream.receive, stream.send)
            if not stream.started:
                raise RuntimeError("the handler returned without sending a response")
            if not stream.finished:
                await stream.send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            pass  # the gateway gave up on this request (client gone or deadline)
        except Exception as exc:  # plugin code may raise anything
            url = head.path + ("?" + head.query.decode("latin-1") if head.query else "")
            status, body = error_response(exc, head.method, url, self.spec.dev)
            if status >= 500:
                log.exception("%s %s failed in plugin '%s'", head.method, url, self.spec.plugin_id)
            stream.fail(exc, status, body)
        finally:
            self.streams.pop(key, None)

    # -- main loop -----------------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM,):
            loop.add_signal_handler(sig, self._stop.set)
        try:
            await asyncio.wait_for(self._all_acked.wait(), self.spec.heartbeat_timeout * 2)
        except TimeoutError:
            log.error("plugin '%s': no answer from the gateways", self.spec.plugin_id)
            return 1
        assert self.control is not None
        self.control.send(
            [
                encode(
                    Hello(
                        PROTOCOL_VERSION,
                        "worker",
                        self.spec.plugin_id,
                        self.spec.worker_id,
                        os.getpid(),
                        self.router.policies,
                    )
                )
            ]
        )
        beat = loop.create_task(self._heartbeat())
        await self._stop.wait()
        beat.cancel()
        if self._fatal is not None:
            return 1
        await self._drain()
        await self._lifecycle("before_shutdown")
        await self._lifecycle("shutdown")
        return 0

    async def _drain(self) -> None:
        deadline = time.monotonic() + self.spec.grace
        while self.streams and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for stream in list(self.streams.values()):
            stream.disconnect()

    async def _readiness(self) -> None:
        """Run the plugin's own readiness checks (if it asked for ``core.health``) once a second."""
        health = self.container.cached(core_services.health) if self.container else None
        if health is None:
            return
        while True:
            failing = await health.failing_checks()
            self._unready = ("failing readiness checks: " + ", ".join(failing)) if failing else ""
            await asyncio.sleep(1.0)

    async def _heartbeat(self) -> None:
        parent = os.getppid()
        self._supervisor_seen = time.monotonic()  # the clock starts now, not before a slow boot
        assert self.control is not None
        checks = asyncio.get_running_loop().create_task(self._readiness())
        while True:
            self.control.send([encode(Heartbeat(time.time(), not self._unready, self._unready))])
            await asyncio.sleep(self.spec.heartbeat_interval)
            if checks.done() and not checks.cancelled() and checks.exception() is not None:
                log.error("readiness checks of plugin '%s' crashed: %r", self.spec.plugin_id, checks.exception())
                checks = asyncio.get_running_loop().create_task(self._readiness())
            silent = time.monotonic() - self._supervisor_seen
            if silent > self.spec.heartbeat_timeout or os.getppid() != parent:
                log.error("plugin '%s': supervisor silent for %.1fs, exiting", self.spec.plugin_id, silent)
                os._exit(1)


async def main(spec: WorkerSpec, config: RootConfig, prepare: Prepare | None = None) -> int:
    worker = Worker(spec)
    await worker.boot(config, prepare)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    worker.connect(ctx)
    try:
        return await worker.run()
    finally:
        for s in worker.gateways:
            s.close()
        if worker.control is not None:
            worker.control.close()
        ctx.term()

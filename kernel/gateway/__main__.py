"""``python -m kernel.gateway``: one gateway process, started by the supervisor."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from typing import Any

import msgspec

from kernel.procutil import die_with_parent, install_event_loop_policy


class GatewaySpec(msgspec.Struct, frozen=True):
    index: int
    fd: int
    endpoint: str
    control: str
    config_paths: list[str]
    server: str = "hypercorn"
    mount: str = "/api"
    timeout: float = 30.0
    max_body: int = 100 * 1024 * 1024
    dev: bool = False


async def serve(spec: GatewaySpec) -> int:
    from kernel.config import load_config
    from kernel.gateway.app import build_app
    from kernel.gateway.auth import Authenticator, static_tokens_from_config
    from kernel.gateway.dispatch import ApiDispatcher
    from kernel.gateway.pool import WorkerPool

    loop = asyncio.get_running_loop()
    config = load_config(spec.config_paths)
    auth = Authenticator([static_tokens_from_config(config)])
    stop = asyncio.Event()
    api: ApiDispatcher

    async def drain(grace: float) -> None:
        deadline = loop.time() + grace
        while api.inflight and loop.time() < deadline:
            await asyncio.sleep(0.02)
        stop.set()

    draining: list[asyncio.Task[None]] = []

    def on_shutdown(grace: float) -> None:
        if not draining:
            draining.append(loop.create_task(drain(grace)))

    pool = WorkerPool(spec.index, spec.endpoint, spec.control, on_shutdown)
    api = ApiDispatcher(pool, auth, mount=spec.mount, timeout=spec.timeout, max_body=spec.max_body)
    app = build_app(pool, api, dev=spec.dev)
    loop.add_signal_handler(signal.SIGTERM, on_shutdown, 10.0)
    pool.start()
    try:
        if spec.server == "uvicorn":
            await _uvicorn(app, spec, stop)
        else:
            await _hypercorn(app, spec, stop)
    finally:
        pool.close()
    return 0


async def _hypercorn(app: Any, spec: GatewaySpec, stop: asyncio.Event) -> None:
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"fd://{spec.fd}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("kernel.gateway.http")
    config.graceful_timeout = 1.0
    await hypercorn_serve(app, config, shutdown_trigger=stop.wait)


async def _uvicorn(app: Any, spec: GatewaySpec, stop: asyncio.Event) -> None:
    import uvicorn

    config = uvicorn.Config(app, http="httptools", lifespan="off", access_log=False, log_level="warning")
    server = uvicorn.Server(config)
    # Hand uvicorn the inherited listener as a TCP socket: with ``fd=`` it treats it as a unix
    # socket and never sets TCP_NODELAY (Nagle + delayed ACK: ~44 ms per request).
    listener = socket.socket(fileno=spec.fd)
    task = asyncio.get_running_loop().create_task(server._serve(sockets=[listener]))  # no signal handlers
    await stop.wait()
    server.should_exit = True
    await task


def run() -> int:
    die_with_parent(int(os.environ["KERNEL_PARENT_PID"]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when we stop
    from services.logger import configure

    spec = msgspec.json.decode(os.environ["KERNEL_GATEWAY_SPEC"], type=GatewaySpec)
    configure(os.environ.get("KERNEL_LOG_LEVEL", "info"))
    install_event_loop_policy()
    return asyncio.run(serve(spec))


if __name__ == "__main__":
    sys.exit(run())

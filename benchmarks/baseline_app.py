"""The baseline: the benchmark handlers in a plain in-process Starlette app, no kernel in the path.

Run by ``python -m benchmarks`` as ``python -m benchmarks.baseline_app --server S --port P``.
With ``--app composed`` it serves instead the kernel's whole gateway, composed as ``kernel serve``
composes it (``kernel.gateway.compose``: limits, edge, dispatcher), with the ``bench`` plugin booted
in the same process behind the in-memory transport (``start_test_backend``): the cost of the gateway's
stack without the hop to a worker process (``GET /api/bench/hello``).
It is served by the same server with the same settings as the kernel's gateway
(``kernel/gateway/__main__.py``): hypercorn through ``hypercorn.asyncio.serve``
with access log off and ``graceful_timeout=1``, or uvicorn with httptools,
lifespan off and access log off, for ``uvicorn`` and for ``auto`` (whose HTTP/1.1
is uvicorn's httptools protocol); one process, uvloop installed the same way
(``kernel.launch.install_event_loop_policy``). It binds host:port itself, the
way a user would run the server: the ceiling the gateway hop is compared to.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import kernel_bench.handlers as handlers
from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute


def build_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/hello", handlers.hello, methods=["GET"]),
            Route("/echo", handlers.echo, methods=["POST"]),
            Route("/download", handlers.download, methods=["GET"]),
            Route("/upload", handlers.upload, methods=["POST"]),
            WebSocketRoute("/ws-echo", handlers.ws_echo),
        ]
    )


@asynccontextmanager
async def _app(kind: str) -> AsyncIterator[Any]:
    """The plain app, or the composed gateway serving the bench plugin in this process."""
    if kind == "plain":
        yield build_app()
        return
    from kernel_bench.plugin import plugin

    from kernel.testing import start_test_backend

    async with start_test_backend([plugin]) as backend:
        yield backend.app  # type: ignore[attr-defined]


async def _hypercorn(host: str, port: int, kind: str) -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.backlog = 2048  # as the kernel's listener
    config.accesslog = None
    config.graceful_timeout = 1.0
    async with _app(kind) as app:
        await serve(app, config, shutdown_trigger=stop.wait)


async def _uvicorn(host: str, port: int, kind: str) -> None:
    import uvicorn

    async with _app(kind) as app:
        await uvicorn.Server(_uvicorn_config(app, host, port)).serve()


def _uvicorn_config(app: Any, host: str, port: int) -> Any:
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http="httptools",
        loop="uvloop",
        lifespan="off",
        access_log=False,
        log_level="warning",
        backlog=2048,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.baseline_app")
    parser.add_argument("--server", choices=["auto", "hypercorn", "uvicorn"], default="auto")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--app", choices=["plain", "composed"], default="plain")
    args = parser.parse_args(argv)
    from kernel.launch import install_event_loop_policy

    install_event_loop_policy()  # uvloop, as uvicorn's loop="uvloop" and the gateway
    serve = _hypercorn if args.server == "hypercorn" else _uvicorn  # auto's HTTP/1.1 is uvicorn's protocol
    asyncio.run(serve(args.host, args.port, args.app))
    return 0


if __name__ == "__main__":
    sys.exit(main())

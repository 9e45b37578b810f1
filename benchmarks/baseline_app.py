"""The baseline: the benchmark handlers in a plain in-process Starlette app, no kernel in the path.

Run by ``python -m benchmarks`` as ``python -m benchmarks.baseline_app --server S --port P``.
It is served by the same server with the same settings as the kernel's gateway
(``kernel/gateway/__main__.py``): hypercorn through ``hypercorn.asyncio.serve``
with access log off and ``graceful_timeout=1``, or uvicorn with httptools,
lifespan off and access log off; one process, uvloop installed the same way
(``kernel.launch.install_event_loop_policy``). It binds host:port itself, the
way a user would run the server: the ceiling the gateway hop is compared to.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import kernel_bench.handlers as handlers
from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute


def build_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/hello", handlers.hello, methods=["GET"]),
            Route("/echo", handlers.echo, methods=["POST"]),
            Route("/download", handlers.download, methods=["GET"]),
            WebSocketRoute("/ws-echo", handlers.ws_echo),
        ]
    )


async def _hypercorn(host: str, port: int) -> None:
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
    await serve(build_app(), config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]


def _uvicorn(host: str, port: int) -> None:
    import uvicorn

    config = uvicorn.Config(
        build_app(),
        host=host,
        port=port,
        http="httptools",
        loop="uvloop",
        lifespan="off",
        access_log=False,
        log_level="warning",
        backlog=2048,
    )
    uvicorn.Server(config).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.baseline_app")
    parser.add_argument("--server", choices=["hypercorn", "uvicorn"], default="hypercorn")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    if args.server == "uvicorn":
        _uvicorn(args.host, args.port)
    else:
        from kernel.launch import install_event_loop_policy

        install_event_loop_policy()
        asyncio.run(_hypercorn(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())

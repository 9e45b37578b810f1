"""Plugin ``bench``: the routes ``python -m benchmarks`` drives through gateway and worker.

- ``GET /api/bench/hello``            small JSON, open (``unauthenticated``)
- ``GET /api/bench/private/hello``    the same handler, protected (needs a token)
- ``POST /api/bench/echo``            JSON echoed back, open
- ``GET /api/bench/download?size=N``  N bytes streamed, open
- ``POST /api/bench/upload``          the body read as a stream and discarded, its size answered, open
- ``WS /api/bench/ws-echo``           every WebSocket message echoed, open
"""

from __future__ import annotations

from kernel.api import HttpRouter, core_services, create_plugin
from kernel_bench import handlers

plugin = create_plugin("bench")


@plugin.init(router=core_services.http_router)
async def init(router: HttpRouter) -> None:
    router.add_route("/hello", handlers.hello, methods=["GET"])
    router.add_route("/private/hello", handlers.hello, methods=["GET"])
    router.add_route("/echo", handlers.echo, methods=["POST"])
    router.add_route("/download", handlers.download, methods=["GET"])
    router.add_route("/upload", handlers.upload, methods=["POST"])
    router.add_websocket_route("/ws-echo", handlers.ws_echo)
    for path in ("/hello", "/echo", "/download", "/upload", "/ws-echo"):
        router.add_auth_policy(path, allow="unauthenticated")

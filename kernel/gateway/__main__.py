"""``python -m kernel.gateway``: one gateway process, started by the supervisor; composes the gateway.

The spec on stdin (``kernel.launch.GatewaySpec``) carries the settings and the
config the supervisor loaded; later configs arrive as ``ConfigUpdate`` on the
control link. Credential verifiers and root routes come from the hooks of the
built-in and installed providers; verifiers are rebuilt after each reload.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from functools import partial
from typing import Any

from kernel.config import Config, LiveConfig
from kernel.gateway import servers as http_servers
from kernel.gateway.compose import compose_gateway
from kernel.gateway.control import ControlLink
from kernel.gateway.limits import limited
from kernel.gateway.links import WorkerLinks
from kernel.gateway.servers import ALPN
from kernel.gateway.table import RoutingTable
from kernel.gateway.tls import server_context
from kernel.gateway.zmq_transport import ZmqTransport
from kernel.launch import GatewaySpec, apply_config_update, start_child
from kernel.logs import configure_from_config
from kernel.metrics.endpoint import metrics_app
from kernel.registry import load_registry
from kernel.transport.connection import hello
from kernel.transport.curve import CurveServer

log = logging.getLogger("kernel.gateway")
#: seconds a gateway waits for the workers to join it again before it takes connections (after a restart)
REACH_TIMEOUT = 5.0


async def serve(spec: GatewaySpec) -> int:
    loop = asyncio.get_running_loop()
    config = LiveConfig(Config.from_snapshot(spec.config))
    configure_from_config(config)
    registry = load_registry(only=spec.providers, services=False)
    for failure in registry.failures:
        log.error("%s: %s", spec.name, failure)
    assert registry.manager is not None
    name = f"gateway-{spec.index}"
    table = RoutingTable(tolerated=lambda plugin_id: spec.settings.boot_policy(plugin_id) == "continue")
    links = WorkerLinks(table, ZmqTransport(name, spec.endpoint, **_remote(spec, name)))
    gateway = compose_gateway(spec.settings, registry.manager.hook, config, links, name=name, dev=spec.dev)
    api = gateway.api
    stop = asyncio.Event()
    draining: list[asyncio.Task[None]] = []

    async def drain(grace: float) -> None:
        deadline = loop.time() + grace
        while api.inflight and loop.time() < deadline:
            await asyncio.sleep(0.02)
        stop.set()

    def on_shutdown(grace: float) -> None:
        api.close_sockets()
        if not draining:
            draining.append(loop.create_task(drain(grace)))

    retiring = [0.0]  # a rolling restart: how long the open connections may go on (``kernel.gateway.acceptor``)

    def on_retire(grace: float) -> None:
        log.info("%s is being replaced: it takes no new connection, the open ones finish", name)
        api.close_sockets()  # WebSockets close with 1001: their clients reconnect to another gateway
        retiring[0] = max(grace, 0.001)
        stop.set()

    control = ControlLink(
        name, spec.control, links, on_shutdown, partial(apply_config_update, config), spec.secret, on_retire
    )
    g = spec.settings.gateway
    tls = None
    if spec.settings.edge.https is not None:
        tls = server_context(spec.settings.edge.https, alpn=ALPN[g.server], base_url=spec.settings.base_url)
    loop.add_signal_handler(signal.SIGTERM, on_shutdown, spec.settings.workers.shutdown_grace)
    gateway.start()
    control.start()
    try:
        if not await links.reachable(REACH_TIMEOUT, hello("gateway", worker_id=name)):
            log.warning("%s: some workers did not join it within %gs; serving all the same", name, REACH_TIMEOUT)
        linger = lambda: retiring[0]  # noqa: E731
        servers = [http_servers.serve(g.server, gateway.app, spec.fd, stop, tls, g, linger)]
        if spec.metrics_fd >= 0:  # the metrics' own listener
            own = metrics_app(gateway.view, spec.settings.metrics.path)
            servers.append(http_servers.serve("hypercorn", limited(own, g), spec.metrics_fd, stop, linger=linger))
        await asyncio.gather(*servers)
    finally:
        control.close()
        await gateway.close()
    return 0


def _remote(spec: GatewaySpec, name: str) -> dict[str, Any]:
    """``backend.workers.remote``: this gateway's CURVE server and its ``tcp://`` endpoint (port+1+index)."""
    remote = spec.settings.workers.remote
    if remote is None:
        return {}
    curve = CurveServer(remote.server_key, remote.allowed_keys, remote.heartbeat_timeout, name)
    return {"curve": curve, "tcp_endpoint": remote.gateway_endpoint(spec.index)}


def run() -> int:
    spec = start_child(GatewaySpec)
    return asyncio.run(serve(spec))


if __name__ == "__main__":
    sys.exit(run())

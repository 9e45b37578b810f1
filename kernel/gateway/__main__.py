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
from collections.abc import Sequence
from functools import partial

import pluggy

from kernel.config import Config, ConfigError, LiveConfig
from kernel.gateway.app import GatewayState, build_app
from kernel.gateway.auth import Authenticator
from kernel.gateway.middleware.ratelimit_stores import create_store
from kernel.gateway.routing import ApiDispatcher
from kernel.gateway.servers import ALPN, SERVERS, serve_hypercorn
from kernel.gateway.tls import server_context
from kernel.gateway.workers import WorkerPool
from kernel.hooktypes import CredentialVerifier, GatewayMiddleware
from kernel.launch import GatewaySpec, apply_config_update, start_child
from kernel.logs import configure_from_config
from kernel.metrics.endpoint import metrics_app
from kernel.metrics.http import RequestMetrics
from kernel.registry import in_registration_order, load_registry

log = logging.getLogger("kernel.gateway")


def _verifiers(hooks: pluggy.HookRelay, config: Config) -> list[CredentialVerifier]:
    results: list[Sequence[CredentialVerifier]] = hooks.kernel_credential_verifiers(config=config)
    return in_registration_order(results)


async def serve(spec: GatewaySpec) -> int:
    loop = asyncio.get_running_loop()
    config = LiveConfig(Config.from_snapshot(spec.config))
    configure_from_config(config)
    registry = load_registry(only=spec.providers, services=False)
    for failure in registry.failures:
        log.error("%s: %s", spec.name, failure)
    assert registry.manager is not None
    hooks = registry.manager.hook
    auth = Authenticator(_verifiers(hooks, config.current))

    def reloaded(new: Config) -> None:
        try:
            auth.replace_verifiers(_verifiers(hooks, new))
        except ConfigError as exc:
            log.error("%s keeps its credentials: %s", spec.name, exc)

    config.subscribe(reloaded)
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

    g = spec.settings.gateway

    def tolerated(plugin_id: str) -> bool:
        return spec.settings.boot_policy(plugin_id) == "continue"

    pool = WorkerPool(
        spec.index,
        spec.endpoint,
        spec.control,
        on_shutdown,
        partial(apply_config_update, config),
        tolerated,
        secret=spec.secret,
    )
    api = ApiDispatcher(
        pool,
        auth,
        mount=g.mount,
        timeout=g.request_timeout,
        max_body=g.max_request_body_size,
        worker_wait=g.worker_wait_timeout,
        limits=spec.settings.limits,
        lowest_in_flight=spec.settings.lowest_in_flight_limit(),
        max_headers=g.max_headers,
    )
    view = GatewayState(pool, api)
    results = hooks.kernel_root_routes(gateway=view, config=config)
    edge = spec.settings.edge
    store = create_store(edge.rate_limit.store) if edge.rate_limit is not None else None
    middleware: list[GatewayMiddleware] = in_registration_order(hooks.kernel_gateway_middleware(config=config.current))
    metrics = RequestMetrics(pool.in_flight) if spec.settings.metrics.enabled else None
    if metrics is not None:
        metrics.start()
    app = build_app(
        api,
        in_registration_order(results),
        dev=spec.dev,
        edge=edge,
        rate_limit_store=store,
        middleware=middleware,
        metrics=metrics,
    )
    tls = None
    if edge.https is not None:
        tls = server_context(edge.https, alpn=ALPN[g.server], base_url=spec.settings.base_url)
    loop.add_signal_handler(signal.SIGTERM, on_shutdown, spec.settings.workers.shutdown_grace)
    pool.start()
    try:
        servers = [SERVERS[g.server](app, spec.fd, stop, tls, g)]
        if spec.metrics_fd >= 0:  # the metrics' own listener
            servers.append(serve_hypercorn(metrics_app(view, spec.settings.metrics.path), spec.metrics_fd, stop))
        await asyncio.gather(*servers)
    finally:
        pool.close()
        if store is not None:
            await store.close()
    return 0


def run() -> int:
    spec = start_child(GatewaySpec)
    return asyncio.run(serve(spec))


if __name__ == "__main__":
    sys.exit(run())

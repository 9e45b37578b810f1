"""The gateway, composed in one place: the same for ``kernel serve``, the test backend and the benchmarks.

``compose_gateway`` builds everything a gateway answers with, from the settings, the hooks of the
loaded providers, the live config and a worker link (``kernel.gateway.links``):

- the credential verifiers (``kernel_credential_verifiers``), rebuilt after every config reload;
- the dispatcher of the plugin mount (``kernel.gateway.dispatcher``) with every limit of ``backend.gateway``
  and ``backend.workers`` (request timeout, body size, worker wait, ``maxInFlight`` queues);
- the root routes of installed packages (``kernel_root_routes``: health, metrics, dashboard...);
- the HTTP edge and the middleware of installed packages (``kernel.gateway.app``), with the rate
  limit's store and the request metrics;
- outermost, the limits every server shares (``kernel.gateway.limits``: URL length, header count and
  size, body deadlines).

What differs between callers is only what they pass in: the transport under the worker link (ZeroMQ
in a gateway process, the event loop in the test backend), the hooks (the test backend adds the
features under test) and, for the test backend, a verifier of mock tokens in front.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import pluggy
from starlette.types import ASGIApp

from kernel.config import ConfigError
from kernel.core_services import RootConfig
from kernel.gateway.app import GatewayState, build_app
from kernel.gateway.auth import Authenticator
from kernel.gateway.dispatcher import ApiDispatcher
from kernel.gateway.limits import limited
from kernel.gateway.links import WorkerLinks
from kernel.gateway.middleware.ratelimit import Store
from kernel.gateway.ratelimit_stores import create_store
from kernel.hooktypes import CredentialVerifier, GatewayMiddleware
from kernel.metrics.http import RequestMetrics
from kernel.registry import in_registration_order
from kernel.settings import Settings

log = logging.getLogger("kernel.gateway")


class ComposedGateway:
    """A composed gateway: ``app`` is what a server serves; ``close()`` when the server has stopped."""

    def __init__(
        self,
        app: ASGIApp,
        api: ApiDispatcher,
        view: GatewayState,
        links: WorkerLinks,
        store: Store | None,
        metrics: RequestMetrics | None,
        unsubscribe: Callable[[], None],
    ) -> None:
        self.app = app
        self.api = api
        self.view = view
        self.links = links
        self._store = store
        self.metrics = metrics
        self._unsubscribe = unsubscribe

    def start(self) -> None:
        """Start moving frames to and from the workers, and writing the request metrics (in a running loop)."""
        self.links.start()
        if self.metrics is not None:
            self.metrics.start()

    async def close(self) -> None:
        """Stop what ``start`` and the composition started: links, reload subscription, metrics' writer, store."""
        self.links.close()
        self._unsubscribe()
        if self.metrics is not None:
            self.metrics.stop()
        if self._store is not None:
            await self._store.close()


def compose_gateway(
    settings: Settings,
    hooks: pluggy.HookRelay,
    config: RootConfig,
    links: WorkerLinks,
    *,
    name: str = "gateway",
    dev: bool = False,
    first_verifiers: Sequence[CredentialVerifier] = (),
) -> ComposedGateway:
    """The whole gateway over ``links``; then ``start()`` it in a running loop."""

    def verifiers(current: RootConfig) -> list[CredentialVerifier]:
        found: list[CredentialVerifier] = in_registration_order(hooks.kernel_credential_verifiers(config=current))
        return [*first_verifiers, *found]

    auth = Authenticator(verifiers(config))

    def reloaded(new: RootConfig) -> None:
        try:
            auth.replace_verifiers(verifiers(new))
        except ConfigError as exc:
            log.error("%s keeps its credentials: %s", name, exc)

    unsubscribe = config.subscribe(reloaded)
    g = settings.gateway
    api = ApiDispatcher(
        links,
        auth,
        mount=g.mount,
        timeout=g.request_timeout,
        max_body=g.max_request_body_size,
        worker_wait=g.worker_wait_timeout,
        limits=settings.limits,
        lowest_in_flight=settings.lowest_in_flight_limit(),
    )
    view = GatewayState(links, api)
    root_routes = in_registration_order(hooks.kernel_root_routes(gateway=view, config=config))
    edge = settings.edge
    store = create_store(edge.rate_limit.store) if edge.rate_limit is not None else None
    middleware: list[GatewayMiddleware] = in_registration_order(hooks.kernel_gateway_middleware(config=config))
    metrics = RequestMetrics(links.in_flight) if settings.metrics.enabled else None
    app = build_app(
        api,
        root_routes,
        dev=dev,
        edge=edge,
        rate_limit_store=store,
        middleware=middleware,
        metrics=metrics,
    )
    return ComposedGateway(limited(app, g), api, view, links, store, metrics, unsubscribe)

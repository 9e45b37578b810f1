"""What both test backends share: the features they take, and the running backend's base class.

``split_features`` sorts ``start_test_backend``'s features into plugins, modules by plugin and hook
modules; ``TestBackend`` is what it returns (``kernel.testing.in_process``, ``kernel.testing.process_backend``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Literal

import httpx

from kernel.api import ServiceFactory, ServiceRef
from kernel.errors import BootError
from kernel.plugin import BackendModule, BackendPlugin
from kernel.registry import HOOK_NAMES
from kernel.testing.fakes import instance_factory
from kernel.testing.websockets import WebSocketSession

__all__ = ["Feature", "ServiceLike", "TestBackend", "factory_of", "split_features"]

#: a plugin, a module, or a hook module (a policy, services, verifiers...)
Feature = BackendPlugin | BackendModule | object
#: a ``ServiceFactory``, ``(ref, instance)``, or anything with ``factory()`` (mocks, test databases, ...)
ServiceLike = ServiceFactory | tuple[ServiceRef[Any], Any] | object


class TestBackend:
    """A running test backend: ``client`` (``httpx.AsyncClient`` on ``url``), ``stop()``."""

    __test__ = False  # not a pytest test class
    mode: Literal["in-process", "process"]

    def __init__(self, url: str, client: httpx.AsyncClient) -> None:
        self.url = url
        self.client = client

    async def stop(self) -> None:
        await self.client.aclose()

    def websocket_connect(
        self, path: str, *, headers: Mapping[str, str] | None = None, subprotocols: Sequence[str] = ()
    ) -> WebSocketSession:
        """A WebSocket through the gateway (in process; a real kernel takes any client on ``url``)."""
        raise NotImplementedError(
            f"websocket_connect is the in-process backend's; in mode {self.mode!r} connect any WebSocket "
            f"client (aiohttp's, say) to {self.url.replace('http', 'ws', 1)}{path}"
        )

    async def __aenter__(self) -> TestBackend:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


def split_features(
    features: Sequence[Feature],
) -> tuple[list[BackendPlugin], dict[str, list[BackendModule]], list[object]]:
    """Plugins, modules by plugin id, and hook modules; anything else is a ``TypeError``."""
    plugins: list[BackendPlugin] = []
    modules: dict[str, list[BackendModule]] = {}
    providers: list[object] = []
    for feature in features:
        if isinstance(feature, BackendPlugin):
            plugins.append(feature)
        elif isinstance(feature, BackendModule):
            modules.setdefault(feature.plugin_id, []).append(feature)
        elif any(callable(getattr(feature, name, None)) for name in HOOK_NAMES):
            providers.append(feature)
        else:
            raise TypeError(f"{feature!r} is neither a plugin, a module nor a module implementing kernel hooks")
    ids = [p.id for p in plugins]
    if len(set(ids)) != len(ids):
        raise BootError(f"duplicate plugin id among the features: {ids}")
    for plugin_id in modules:
        if plugin_id not in ids:
            raise BootError(f"a module extends plugin '{plugin_id}', which is not among the features")
    return plugins, modules, providers


def factory_of(item: ServiceLike) -> ServiceFactory:
    """A ``ServiceFactory`` from what ``services=`` accepts."""
    if isinstance(item, ServiceFactory):
        return item
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], ServiceRef):
        return instance_factory(item[0], item[1])
    make = getattr(item, "factory", None)
    made = make() if callable(make) else None
    if isinstance(made, ServiceFactory):
        return made
    raise TypeError(f"services: {item!r} is not a ServiceFactory, a (ref, instance) pair, nor has factory()")

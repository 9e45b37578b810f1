"""``start_test_backend``: the plugins under test, their real routes behind the real gateway, in one call.

In the test's own process by default (``mode="in-process"``, ``kernel.testing.in_process``): the
gateway composed exactly as ``kernel serve`` composes it (``kernel.gateway.compose``), with the
protocol's messages passed in memory instead of over ZeroMQ. ``backend.client`` is an
``httpx.AsyncClient`` on it.

``mode="process"``: the same plugins in a real ``kernel serve`` (``kernel.testing.process_backend``).
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from functools import partial
from typing import Any, Literal

from kernel.testing.features import Feature, ServiceLike, TestBackend
from kernel.testing.in_process import InProcessBackend, start_in_process
from kernel.testing.process_backend import start_process

__all__ = [
    "Feature",
    "InProcessBackend",
    "ServiceLike",
    "TestBackend",
    "start_test_backend",
]


class _Starting:
    """What ``start_test_backend`` returns: ``await`` it, or ``async with`` it (stopped on exit)."""

    def __init__(self, start: Any) -> None:
        self._start = start
        self._backend: TestBackend | None = None

    def __await__(self) -> Generator[Any, None, TestBackend]:
        return self._start().__await__()  # type: ignore[no-any-return]

    async def __aenter__(self) -> TestBackend:
        self._backend = await self._start()
        return self._backend

    async def __aexit__(self, *exc: object) -> None:
        if self._backend is not None:
            await self._backend.stop()


def start_test_backend(
    features: Sequence[Feature] = (),
    *,
    services: Sequence[ServiceLike] = (),
    config: Mapping[str, Any] | None = None,
    mode: Literal["in-process", "process"] = "in-process",
    dev: bool = False,
    timeout: float = 30.0,
) -> _Starting:
    """Start ``features`` behind the gateway; ``async with start_test_backend([plugin]) as backend: ...``.

    ``config``: the app-config (a dict). ``dev``: development mode (error bodies carry a ``stack``).
    ``mode="process"``: a real ``kernel serve`` (``timeout``: seconds to get ready); see the module doc.
    """
    if mode == "process":
        return _Starting(partial(start_process, list(features), list(services), config, dev, timeout))
    if mode != "in-process":
        raise ValueError(f"mode must be 'in-process' or 'process', not {mode!r}")
    return _Starting(partial(start_in_process, list(features), list(services), config, dev))

"""The health service: plugins add readiness checks; the kernel runs them with each heartbeat."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from kernel.api import Logger, ServiceFactory, core_services, create_service_factory

CHECK_TIMEOUT = 2.0


class ReadinessChecks:
    """A ``kernel.api.Health``: a check that returns false, raises or times out makes the worker unready."""

    def __init__(self, logger: Logger) -> None:
        self._checks: list[tuple[Callable[[], Awaitable[bool]], str]] = []
        self._logger = logger

    def add_readiness_check(self, check: Callable[[], Awaitable[bool]], *, label: str = "") -> None:
        self._checks.append((check, label or getattr(check, "__qualname__", repr(check))))

    async def failing_checks(self) -> list[str]:
        failing = []
        for check, label in self._checks:
            try:
                ok = await asyncio.wait_for(check(), CHECK_TIMEOUT)
            except Exception as exc:  # a broken check is a failing check
                self._logger.warning(f"readiness check {label} failed", error=repr(exc))
                ok = False
            if not ok:
                failing.append(label)
        return failing


@create_service_factory(core_services.health, {"logger": core_services.logger})
def _health(logger: Logger) -> ReadinessChecks:
    return ReadinessChecks(logger)


FACTORIES: list[ServiceFactory] = [_health]

"""The discovery service (default implementation)."""

from __future__ import annotations

from kernel.service import ServiceFactory

FACTORIES: list[ServiceFactory] = []

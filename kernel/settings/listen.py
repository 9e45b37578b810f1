"""``backend.listen``: where the gateway accepts connections (``backend.baseUrl`` is a plain field of ``Settings``).

A contract module: it imports only ``kernel.settings.base``.
"""

from __future__ import annotations

from kernel.settings.base import SettingsStruct

__all__ = ["Listen"]


class Listen(SettingsStruct, frozen=True):
    """``backend.listen``: where the gateway accepts connections."""

    #: address the gateway listens on (`0.0.0.0`: every interface)
    host: str = "0.0.0.0"
    #: port the gateway listens on
    port: int = 7007

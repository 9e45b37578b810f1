"""``backend.dashboard``: the kernel's live dashboard at ``/.kernel/dashboard`` and who may read it.

The dashboard (``kernel.dashboard``) reads it again on each request, so it follows reloads.

A contract module: it imports the standard library, ``kernel.errors`` and ``kernel.settings.base``.
"""

from __future__ import annotations

from kernel.errors import ConfigError
from kernel.settings.base import HasGetOptional, SettingsStruct, convert

__all__ = ["DashboardSettings", "read_dashboard_settings"]


class DashboardSettings(SettingsStruct, frozen=True):
    """``backend.dashboard``: the live dashboard at ``/.kernel/dashboard`` (``kernel.dashboard``), for operators.

    The page holds no data; its snapshot (``/.kernel/dashboard/v1/snapshot``, which ``kernel status``
    reads too) needs the credentials of a principal listed in ``operators``. Secure by default: with
    no operator listed, every caller is refused (403).
    """

    #: serve the dashboard page and its snapshot (false: both answer 404)
    enabled: bool = True
    #: who may read the snapshot: principal subjects, such as `external:ops` (a static token of
    #: `backend.auth.externalAccess` with subject `ops`) or a user entity ref (`user:default/alice`);
    #: nobody when empty
    operators: list[str] = []


def read_dashboard_settings(config: HasGetOptional) -> DashboardSettings:
    """``backend.dashboard``, validated (the dashboard reads it on each request: it follows reloads)."""
    key = "backend.dashboard"
    settings: DashboardSettings = convert(config.get_optional(key), key, DashboardSettings)
    for i, subject in enumerate(settings.operators):
        if not subject or subject != subject.strip():
            raise ConfigError(
                f"Invalid config: {key}.operators[{i}] must be a principal subject (such as external:ops or "
                f"user:default/alice), got {subject!r}"
            )
    return settings

"""Each plugin's own logins, made by the supervisor before any worker starts and taken back when it stops.

``PluginLogins.make`` is the supervisor's ``make_logins``: the PostgreSQL role of each plugin
(``services.database_roles``) and its Redis ACL user (``services.cache_users``), as the config values
(dotted path to value) its workers get in place of the kernel's. ``drop`` is its ``drop_logins``.
"""

from __future__ import annotations

from typing import Any

from kernel.api import ConfigReader
from kernel_services.cache_users import CacheUsers, planned_user
from kernel_services.database_roles import planned_login, plugin_logins


class PluginLogins:
    """The logins of one kernel's plugins."""

    def __init__(self) -> None:
        self.cache = CacheUsers()

    async def make(self, config: ConfigReader, plugin_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Per plugin, its own logins; raises ``ConfigError`` when some must be made and cannot."""
        logins = await plugin_logins(config, plugin_ids)
        for pid, login in (await self.cache.make(config, plugin_ids)).items():
            logins.setdefault(pid, {}).update(login)
        return logins

    async def drop(self) -> None:
        """What ``make`` made that lives only while this kernel runs (the Redis users' passwords)."""
        await self.cache.drop()


async def planned_logins(config: ConfigReader, plugin_id: str) -> tuple[dict[str, Any], list[str]]:
    """What ``make`` would give ``plugin_id`` (passwords as placeholders), nothing made; and why, per login."""
    database, why_database = await planned_login(config, plugin_id)
    cache, why_cache = await planned_user(config, plugin_id)
    whys = [f"its PostgreSQL login: {why_database}"] if why_database else []
    whys += [f"its Redis login: {why_cache}"] if why_cache else []
    return {**database, **cache}, whys

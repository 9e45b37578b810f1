"""A Redis login per plugin (``backend.cache.pluginUsers``): an ACL user made by the supervisor before any worker starts.

With the Redis cache (``backend.cache.store: redis``), before it starts a worker, the supervisor
(``kernel serve`` hands it ``CacheUsers``) connects with the configured login (the kernel's, "admin"
here) and, for each plugin, sets ACL user ``<keyPrefix>plugin:<pluginId>`` (``ACL SETUSER``; never
``default``, which that name cannot be):

* ``on``, with a password generated now, sent to Redis as its SHA-256 only (``#<hash>``): the
  password itself is in no command, log or ``ACL LIST``;
* the keys of its own cache alone: ``~<keyPrefix><pluginId>:*`` (``services.cache``'s layout), no
  pub/sub channel;
* the commands a cache uses: ``+@read +@write +@connection``, less ``-@dangerous`` (``FLUSHALL``,
  ``FLUSHDB``, ``CONFIG``, ``KEYS``, ``DEBUG``, ``ACL`` ...), ``-@scripting``, ``-@pubsub``,
  ``-@blocking`` and the commands that list other keys' names (``SCAN``, ``RANDOMKEY``).

Each worker then gets its plugin's login in ``backend.cache.connection`` in place of the kernel's
(``kernel.config.scoping``, its ``login``); with it Redis refuses another plugin's keys and every
other command itself (``NOPERM``). The rate limiter's keys stay the gateways' (its own connection,
``backend.rateLimit.store``), never a worker's.

A kernel adds its password to a user that exists and removes it when it stops (``drop``), deleting the
user once no password is left: kernels sharing one Redis and ``keyPrefix`` share the users without
cutting each other off. A kernel that was killed leaves its password on the user, known to no process.

``pluginUsers``: ``true``, ``false``, or unset (on when the kernel's login may run ``ACL SETUSER``,
Redis 6 or later; off otherwise, and when Redis cannot be asked at start-up). Said at start-up in the
log either way. ``true`` and the users cannot be made: the kernel does not start.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from typing import Any

from kernel.api import ConfigError, ConfigReader
from kernel_services.cache import CacheSettings, read_cache_settings
from kernel_services.database_roles import PLANNED_PASSWORD, with_login

log = logging.getLogger("kernel")

#: what a plugin's user may run: a cache's reads and writes, nothing that reaches past its keys
COMMANDS = (
    "nocommands",
    "+@read",
    "+@write",
    "+@connection",
    "-@dangerous",
    "-@scripting",
    "-@pubsub",
    "-@blocking",
    "-scan",
    "-randomkey",
)
_GLOB = str.maketrans({c: "\\" + c for c in "*?[]\\"})


def user_name(settings: CacheSettings, plugin_id: str) -> str:
    """The ACL user of ``plugin_id``: ``<keyPrefix>plugin:<pluginId>`` (never ``default``)."""
    return f"{settings.key_prefix}plugin:{plugin_id}"


def key_pattern(settings: CacheSettings, plugin_id: str) -> str:
    """The keys ``plugin_id``'s user may touch: its cache's (``<keyPrefix><pluginId>:*``, glob-escaped)."""
    return f"~{(settings.key_prefix + plugin_id).translate(_GLOB)}:*"


def _rules(settings: CacheSettings, plugin_id: str, digest: str) -> list[str]:
    return ["on", f"#{digest}", "resetkeys", key_pattern(settings, plugin_id), "resetchannels", *COMMANDS]


def _digest(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def _admin(settings: CacheSettings) -> Any:
    import redis.asyncio as redis  # only with the Redis cache

    assert settings.connection is not None
    return redis.Redis.from_url(settings.connection, socket_connect_timeout=10, socket_timeout=10)


def _who(settings: CacheSettings) -> str:
    from urllib.parse import unquote, urlparse

    return unquote(urlparse(str(settings.connection)).username or "default")


async def _may_set_users(settings: CacheSettings) -> tuple[bool, str]:
    """Whether the kernel's login may run ``ACL SETUSER``, and why (for the log)."""
    from redis.exceptions import RedisError

    client = _admin(settings)
    try:
        me = await client.execute_command("ACL", "WHOAMI")
        me = me.decode() if isinstance(me, bytes) else str(me)
        verdict = await client.execute_command("ACL", "DRYRUN", me, "ACL", "SETUSER", "kernel-probe")
        verdict = verdict.decode() if isinstance(verdict, bytes) else str(verdict)
    except RedisError as exc:
        text = str(exc)
        if "unknown" in text.lower():  # before Redis 6 (ACL) or 7 (DRYRUN)
            return False, f"Redis has no ACL DRYRUN (before 7.0): {text}"
        if "NOPERM" in text or "no permissions" in text:
            return False, f"login '{_who(settings)}' may not manage ACL users"
        return False, f"Redis cannot be asked whether login '{_who(settings)}' may manage ACL users ({text})"
    except OSError as exc:
        return False, f"Redis cannot be asked whether login '{_who(settings)}' may manage ACL users ({exc})"
    finally:
        await client.aclose()
    may = "may" if verdict == "OK" else "may not"
    return verdict == "OK", f"login '{me}' {may} manage ACL users"


async def _users_on(config: ConfigReader) -> tuple[CacheSettings | None, bool, str]:
    """The cache's settings (``None``: not Redis), whether ``pluginUsers`` applies, and why."""
    try:
        settings = read_cache_settings(config)
    except ConfigError:  # the workers report a bad cache config themselves
        return None, False, ""
    if settings.store != "redis":
        return None, False, ""
    wanted = settings.plugin_users
    if wanted is not None:
        return settings, wanted, f"backend.cache.pluginUsers is {str(wanted).lower()}"
    able, why = await _may_set_users(settings)
    return settings, able, f"backend.cache.pluginUsers unset and {why}"


def _login(settings: CacheSettings, plugin_id: str, password: str) -> dict[str, Any]:
    return {"backend.cache.connection": with_login(settings.connection, user_name(settings, plugin_id), password)}


class CacheUsers:
    """The plugins' Redis users this kernel made (``make``), and their removal when it stops (``drop``)."""

    def __init__(self) -> None:
        self._settings: CacheSettings | None = None
        #: user name -> the SHA-256 of the password this kernel added to it
        self._made: dict[str, str] = {}

    async def make(self, config: ConfigReader, plugin_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Each plugin's user set (see the module doc); per plugin, the config values its workers get in
        place of the kernel's. Empty when ``pluginUsers`` is off or the cache is not Redis.

        Raises ``ConfigError`` when ``pluginUsers`` is ``true`` and the users cannot be made.
        """
        settings, on, why = await _users_on(config)
        if settings is None or not plugin_ids:
            return {}
        if not on:
            log.warning("%s: every plugin reaches the Redis cache with the kernel's login", why)
            return {}
        self._settings = settings
        logins: dict[str, dict[str, Any]] = {}
        client = _admin(settings)
        try:
            for pid in plugin_ids:
                name, password = user_name(settings, pid), secrets.token_urlsafe(32)
                digest = _digest(password)
                try:
                    await client.execute_command("ACL", "SETUSER", name, *_rules(settings, pid, digest))
                except Exception as exc:  # any failure: no worker may start with the kernel's login instead
                    raise ConfigError(f"cannot make the Redis user of plugin '{pid}' ({name}): {exc}") from exc
                self._made[name] = digest
                logins[pid] = _login(settings, pid, password)
        finally:
            await client.aclose()
        log.info("%s: each plugin reaches the Redis cache as a user of its own (%s)", why, ", ".join(self._made))
        return logins

    async def drop(self) -> None:
        """This kernel's passwords taken off its users; a user left with none is deleted."""
        if not self._made or self._settings is None:
            return
        from redis.exceptions import RedisError

        client = _admin(self._settings)
        try:
            for name, digest in list(self._made.items()):
                await client.execute_command("ACL", "SETUSER", name, f"!{digest}")
                user = await client.execute_command("ACL", "GETUSER", name)
                if user is not None and not _passwords(user):
                    await client.execute_command("ACL", "DELUSER", name)
                del self._made[name]
        except (RedisError, OSError) as exc:
            log.warning("the plugins' Redis users could not be removed (%s): %s", exc, ", ".join(self._made))
        finally:
            await client.aclose()


def _passwords(user: Any) -> list[Any]:
    """The ``passwords`` of an ``ACL GETUSER`` reply (a flat list, or a dict in RESP3)."""
    if isinstance(user, dict):
        return list(user.get(b"passwords") or user.get("passwords") or [])
    fields = list(user)
    for key, value in zip(fields[::2], fields[1::2], strict=False):
        if key in (b"passwords", "passwords"):
            return list(value or [])
    return []


async def planned_user(config: ConfigReader, plugin_id: str) -> tuple[dict[str, Any], str]:
    """What ``CacheUsers.make`` would give ``plugin_id`` (its password a placeholder), nothing made; and why."""
    settings, on, why = await _users_on(config)
    if settings is None:
        return {}, ""
    return (_login(settings, plugin_id, PLANNED_PASSWORD) if on else {}), why

"""``backend.rateLimit``: requests per client and window, for every plugin or per plugin (absent: no limit).

Its windows are durations as the reference system writes them (``parse_duration``). What it drives
is ``kernel.gateway.middleware.ratelimit``.

A contract module: it imports msgspec, the standard library, ``kernel.errors`` and ``kernel.settings.base``.
"""

from __future__ import annotations

import re
from typing import Any, Final, Literal

import msgspec

from kernel.errors import ConfigError
from kernel.settings.base import HasGetOptional, SettingsStruct, convert

__all__ = ["PluginRateLimit", "RateLimitSettings", "RateLimitStore", "parse_duration", "read_rate_limit_settings"]


class RateLimitStore(SettingsStruct, frozen=True):
    """``backend.rateLimit.store``: counts per gateway process (``memory``) or shared in Redis."""

    #: ``memory``: counts per gateway process; ``redis``: shared by every gateway process and instance
    type: Literal["memory", "redis"] = "memory"
    #: ``redis://host:port/db``, required for ``redis``
    connection: str | None = None
    #: prepended to the counts' Redis keys (``<keyPrefix>kernel:ratelimit:<client>``); unset: ``backend.cache.keyPrefix``
    key_prefix: str | None = None


class PluginRateLimit(SettingsStruct, frozen=True):
    """``backend.rateLimit.plugin.<pluginId>``: that plugin's own limit; unset keys follow the global ones."""

    #: the plugin's window (seconds here; milliseconds or a duration in the config)
    window: float | None = None
    #: requests one client may send the plugin per window
    incoming_request_limit: int | None = None
    #: addresses never limited for this plugin
    ip_allow_list: list[str] | None = None
    #: answers below 400 do not count
    skip_successful_requests: bool | None = None
    #: answers of 400 and above do not count
    skip_failed_requests: bool | None = None


class RateLimitSettings(SettingsStruct, frozen=True):
    """``backend.rateLimit`` (``true``: these defaults; absent or ``false``: no rate limit).

    ``window`` is in seconds here; the config gives it as milliseconds or a duration (``6s``,
    ``1m``, ``PT1M``, ``{seconds: 6}``). ``global: false`` limits only the plugins under ``plugin``.
    """

    #: limit every plugin's requests; false: only the plugins under ``plugin``
    global_: bool = True
    #: how long one count lasts (seconds here; milliseconds, ``6s``, ``PT1M`` or ``{seconds: 6}`` in the config)
    window: float = 60.0
    #: requests one client (principal or address) may send per window; more are 429
    incoming_request_limit: int = 5
    #: client addresses never limited
    ip_allow_list: list[str] = msgspec.field(default_factory=lambda: ["127.0.0.1", "0:0:0:0:0:0:0:1", "::1"])
    #: answers below 400 do not count
    skip_successful_requests: bool = False
    #: answers of 400 and above do not count
    skip_failed_requests: bool = False
    #: true: a store that fails lets requests through; false: they are 503
    pass_on_store_error: bool = False
    store: RateLimitStore = RateLimitStore()
    #: each plugin's own limit, beside the global one
    plugin: dict[str, PluginRateLimit] = {}


_UNITS: Final = {
    "ms": 0.001, "msec": 0.001, "millisecond": 0.001, "milliseconds": 0.001,
    "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
    "m": 60.0, "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hr": 3600.0, "hrs": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "d": 86400.0, "day": 86400.0, "days": 86400.0,
}  # fmt: skip
_OBJECT_UNITS: Final = ("milliseconds", "seconds", "minutes", "hours", "days")
_ISO = re.compile(r"^P(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?$")
_HUMAN = re.compile(r"^(\d+(?:\.\d+)?)\s*([a-z]+)$")


def parse_duration(value: Any, key: str) -> float:
    """Seconds of a duration as the reference system writes one: milliseconds (a number), ``"6s"``,
    ``"2 minutes"``, ISO 8601 (``"PT1M"``) or ``{minutes: 1, seconds: 30}``."""
    if isinstance(value, bool):
        raise ConfigError(f"Invalid config: {key} must be a duration, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value) / 1000.0
    if isinstance(value, str):
        text = value.strip().lower()
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            return float(text) / 1000.0
        human = _HUMAN.match(text)
        if human and human.group(2) in _UNITS:
            return float(human.group(1)) * _UNITS[human.group(2)]
        iso = _ISO.match(value.strip().upper())
        if iso and any(iso.groups()):
            d, h, m, s = (float(g or 0) for g in iso.groups())
            return d * 86400 + h * 3600 + m * 60 + s
    if isinstance(value, dict) and value:
        total = 0.0
        for unit, amount in value.items():
            if unit not in _UNITS or (unit.endswith(("ms", "s")) is False and unit not in ("m", "h", "d")):
                raise ConfigError(f"Invalid config: {key} has unknown unit '{unit}'")
            if not isinstance(amount, (int, float)) or isinstance(amount, bool):
                raise ConfigError(f"Invalid config: {key}.{unit} must be a number")
            total += amount * _UNITS[unit]
        return total
    raise ConfigError(f"Invalid config: {key} must be a duration (milliseconds, '6s', 'PT1M' or {{seconds: 6}})")


def read_rate_limit_settings(config: HasGetOptional) -> RateLimitSettings | None:
    """``backend.rateLimit`` (``None`` when absent or false: no rate limit), validated."""
    key = "backend.rateLimit"
    raw = config.get_optional(key)
    if raw is None or raw is False or raw == "false":
        return None
    if raw is True or raw == "true":
        return RateLimitSettings()
    if not isinstance(raw, dict):
        raise ConfigError(f"Invalid config: {key} must be true or an object")
    raw = dict(raw)
    if "window" in raw:
        raw["window"] = parse_duration(raw["window"], f"{key}.window")
    plugins = raw.get("plugin")
    if isinstance(plugins, dict):
        raw["plugin"] = {
            pid: {**own, "window": parse_duration(own["window"], f"{key}.plugin.{pid}.window")}
            if isinstance(own, dict) and "window" in own
            else own
            for pid, own in plugins.items()
        }
    settings: RateLimitSettings = convert(raw, key, RateLimitSettings)
    windows = [settings.window, *(p.window for p in settings.plugin.values() if p.window is not None)]
    limits = [settings.incoming_request_limit, *(p.incoming_request_limit for p in settings.plugin.values())]
    if any(w <= 0 for w in windows):
        raise ConfigError(f"Invalid config: {key}.window must be more than 0")
    if any(n is not None and n < 0 for n in limits):
        raise ConfigError(f"Invalid config: {key}.incomingRequestLimit must not be negative")
    if settings.store.type == "redis" and not settings.store.connection:
        raise ConfigError(f"Invalid config: {key}.store of type redis needs a connection (redis://host:port)")
    if settings.store.type == "redis" and settings.store.key_prefix is None:  # the deployment's, as the cache's
        prefix = config.get_optional("backend.cache.keyPrefix")
        if prefix is not None and not isinstance(prefix, str):
            raise ConfigError(f"Invalid config: backend.cache.keyPrefix must be a string, not {prefix!r}")
        store = msgspec.structs.replace(settings.store, key_prefix=prefix or "")
        settings = msgspec.structs.replace(settings, store=store)
    return settings

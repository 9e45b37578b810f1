"""kernel.settings.ratelimit: ``backend.rateLimit``'s forms, and durations as the reference system writes them."""

from __future__ import annotations

from typing import Any

import pytest

from kernel.config import Config
from kernel.errors import ConfigError
from kernel.settings import PluginRateLimit, RateLimitSettings, RateLimitStore, parse_duration, read_settings


def rate_limit_of(value: Any) -> RateLimitSettings | None:
    return read_settings(Config.from_dict({"backend": {"rateLimit": value}})).edge.rate_limit


def test_rate_limit_forms() -> None:
    assert rate_limit_of(True) == RateLimitSettings()
    assert rate_limit_of(False) is None
    limit = rate_limit_of(
        {
            "global": False,
            "window": "6s",
            "incomingRequestLimit": 100,
            "store": {"type": "redis", "connection": "redis://127.0.0.1:6379"},
            "plugin": {"catalog": {"window": {"seconds": 3}, "incomingRequestLimit": 50}},
        }
    )
    assert limit == RateLimitSettings(
        global_=False,
        window=6.0,
        incoming_request_limit=100,
        store=RateLimitStore(type="redis", connection="redis://127.0.0.1:6379", key_prefix=""),
        plugin={"catalog": PluginRateLimit(window=3.0, incoming_request_limit=50)},
    )


def test_the_redis_keys_follow_the_deployments_prefix() -> None:
    redis = {"type": "redis", "connection": "redis://127.0.0.1:6379"}

    def prefix_of(backend: dict[str, Any]) -> str | None:
        limit = read_settings(Config.from_dict({"backend": backend})).edge.rate_limit
        assert limit is not None
        return limit.store.key_prefix

    # the cache's keyPrefix, the deployment's, unless the rate limit names its own
    assert prefix_of({"rateLimit": {"store": redis}, "cache": {"keyPrefix": "staging:"}}) == "staging:"
    own = {"rateLimit": {"store": {**redis, "keyPrefix": "rl:"}}, "cache": {"keyPrefix": "staging:"}}
    assert prefix_of(own) == "rl:"
    assert prefix_of({"rateLimit": {"store": redis}}) == ""
    with pytest.raises(ConfigError, match=r"backend\.cache\.keyPrefix must be a string"):
        prefix_of({"rateLimit": {"store": redis}, "cache": {"keyPrefix": 7}})


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(6000, 6.0), ("6000", 6.0), ("6s", 6.0), ("500ms", 0.5), ("2 minutes", 120.0), ("1h", 3600.0),
     ("PT1M30S", 90.0), ("P1D", 86400.0), ({"minutes": 1, "seconds": 30}, 90.0)],
)  # fmt: skip
def test_durations_as_the_reference_system_writes_them(value: Any, seconds: float) -> None:
    assert parse_duration(value, "k") == seconds

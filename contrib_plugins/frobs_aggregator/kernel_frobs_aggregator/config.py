"""The ``frobsAggregator`` config key.

```yaml
frobsAggregator:
  frobsUrl: https://api.frobsco.com/v1                # GET <frobsUrl>/list: a JSON array of frobs
  flerpsUrl: http://flerps.partnercompany.com:8080    # GET <flerpsUrl>/flerp-batch: a JSON array of flerps
  timeoutSeconds: 5              # one upstream call, connect to last byte
  flerpsCacheTtlSeconds: 300     # a flerps answer is reused this long (the slow partner API)
  fallbackTtlSeconds: 86400      # the last good answer of each upstream, shown when it fails
```

The key is ``frobsAggregator`` (camelCase, as the reference system names plugin config keys),
not the plugin id, so the plugin declares no ``config_schema`` (which the kernel reads at the
plugin id). Two schemas check it. ``FrobsAggregatorConfig`` is what the plugin reads at start-up
and after each reload: both URLs may be missing (UNSET) there, because the package is installed
in every kernel of this repository and must start without the block; ``/summary`` then answers
503 naming the missing keys. ``FrobsAggregatorBlock`` is declared through the
``kernel_config_schemas`` hook (``kernel_frobs_aggregator.hooks``), which ``kernel config check``
applies when a ``frobsAggregator:`` block exists: there both URLs are required.
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

__all__ = ["CONFIG_KEY", "FrobsAggregatorBlock", "FrobsAggregatorConfig", "missing_keys"]

CONFIG_KEY: Final = "frobsAggregator"

#: an absolute http(s) URL without credentials, query or fragment
Url = Annotated[str, msgspec.Meta(pattern=r"^https?://[^\s/?#@]+(/[^\s?#]*)?$")]
Seconds = Annotated[float, msgspec.Meta(gt=0, le=300)]
#: a TTL: at most 30 days
Ttl = Annotated[float, msgspec.Meta(gt=0, le=30 * 86400)]


class FrobsAggregatorConfig(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True, frozen=True):
    """``frobsAggregator``: the two upstream APIs, the timeout and the cache TTLs."""

    #: base URL of the FrobsCo API (``GET <frobsUrl>/list``); UNSET: ``/summary`` answers 503
    frobs_url: Url | msgspec.UnsetType = msgspec.UNSET
    #: base URL of the partner's flerps API (``GET <flerpsUrl>/flerp-batch``); UNSET: 503
    flerps_url: Url | msgspec.UnsetType = msgspec.UNSET
    #: seconds for one upstream call, connect to last byte
    timeout_seconds: Seconds = 5.0
    #: seconds a flerps answer is served from the cache before the partner API is asked again
    flerps_cache_ttl_seconds: Ttl = 300.0
    #: seconds the last good answer of an upstream is kept to stand in for it while it fails
    fallback_ttl_seconds: Ttl = 86400.0


class FrobsAggregatorBlock(FrobsAggregatorConfig, kw_only=True, frozen=True):
    """A ``frobsAggregator:`` block present must name both upstreams (``kernel config check``)."""

    frobs_url: Url
    flerps_url: Url


def missing_keys(settings: FrobsAggregatorConfig) -> list[str]:
    """The full names of the required keys ``settings`` lacks (empty: configured)."""
    return [
        f"{CONFIG_KEY}.{name}"
        for name, value in (("frobsUrl", settings.frobs_url), ("flerpsUrl", settings.flerps_url))
        if not isinstance(value, str)
    ]

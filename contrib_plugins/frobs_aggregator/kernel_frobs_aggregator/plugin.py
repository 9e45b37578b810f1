"""The ``frobs-aggregator`` plugin (mounted at ``/api/frobs-aggregator``): the seed's backend plugin example.

``GET /summary`` (any caller with credentials; secure by default) asks the FrobsCo API
(``GET <frobsUrl>/list``) and the partner's flerps API (``GET <flerpsUrl>/flerp-batch``)
concurrently, then counts the summary in the plugin's database, and answers::

    {"frobs": {"count": 3, "byStatus": {"active": 2, "retired": 1}},
     "flerps": {"count": 4, "byKind": {"big": 1, "small": 3}},
     "summariesServed": 17,
     "sources": {"frobs": {"state": "live", "fetchedAt": "2025-05-01T12:00:00.000Z"},
                 "flerps": {"state": "cached", "fetchedAt": "2025-05-01T11:58:10.000Z"}},
     "partial": false, "errors": {}}

**Caching.** The flerps API is the slow one (a partner's batch endpoint, outside our perimeter):
its summary is served from the cache service for ``flerpsCacheTtlSeconds`` (default 300 s: a
batch feed changes on the partner's schedule, so five minutes of staleness costs the summary
nothing and bounds the partner's load to one call per five minutes per worker, or per deployment
with a shared Redis cache; concurrent misses share one call). Frobs are first-party, fast and the
live part of the summary: asked on every request, never served fresh from the cache.

**When an upstream fails** (refused, timeout after ``timeoutSeconds``, a non-200, an answer that
is not a JSON array), the summary still answers if it can:

- one upstream failed: **200** with the other part; the failed part is its last good summary
  (kept ``fallbackTtlSeconds``, default a day) with state ``stale``, or ``null`` with state
  ``missing`` when there is none; ``"partial": true`` and ``"errors": {"<upstream>": "<reason>"}``
  name it. A flerps copy still younger than its TTL is used without asking, so a flerps outage
  shows only once that copy has expired.
- both failed and neither has a last good summary: **503** ``ServiceUnavailableError`` (the
  kernel's error shape) naming both and why; ``summariesServed`` is not counted.
- reasons are short ("unreachable", "answered HTTP 500", "did not answer within 5s"); URLs and
  upstream bodies go to the plugin's log only.

**Not configured** (no ``frobsAggregator`` block, or a URL missing): the plugin starts anyway,
logs a warning naming the keys, and ``/summary`` answers 503 ``ServiceUnavailableError`` naming
them. Nothing else happens: no upstream call, no aiohttp import, no database, no background task.
A config reload that completes the block makes ``/summary`` work without a restart; an invalid
value at start-up stops the plugin naming the key, after a reload it is logged and ignored.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from kernel.api import (
    CacheService,
    ConfigError,
    DatabaseService,
    HttpRouter,
    Lifecycle,
    Logger,
    OpenApi,
    RootConfig,
    ServiceUnavailableError,
    core_services,
    create_plugin,
    read_section,
)

from .config import CONFIG_KEY, FrobsAggregatorConfig, missing_keys
from .openapi import SUMMARY
from .sources import Source
from .store import SummaryStore
from .summary import compose, nothing_to_show, tally, unavailable_message
from .upstream import Upstream

__all__ = ["plugin"]

#: the config lives at ``frobsAggregator``, not at the plugin id: no ``config_schema`` (see ``config``); its
#: workers get that section whole (a URL may come from ``${VAR}``, which scoping would otherwise withhold)
plugin = create_plugin(
    "frobs-aggregator",
    config_reads=(CONFIG_KEY,),
    config_secrets=(CONFIG_KEY,),
    openapi=OpenApi(title="frobs-aggregator", description="A summary of the frobs and the partner's flerps"),
)


def _read(config: Any) -> FrobsAggregatorConfig:
    return read_section(config, CONFIG_KEY, FrobsAggregatorConfig)


@plugin.init(
    router=core_services.http_router,
    logger=core_services.logger,
    config=core_services.root_config,
    cache=core_services.cache,
    database=core_services.database,
    lifecycle=core_services.lifecycle,
)
async def init(
    router: HttpRouter,
    logger: Logger,
    config: RootConfig,
    cache: CacheService,
    database: DatabaseService,
    lifecycle: Lifecycle,
) -> None:
    settings = _read(config)  # an invalid value stops the plugin here, naming the key
    _announce(logger, settings)
    store = SummaryStore(database)
    if not missing_keys(settings):
        await store.ready()  # configured: a database that cannot migrate stops start-up

    def reloaded(new_config: Any) -> None:
        nonlocal settings
        try:
            fresh = _read(new_config)
        except ConfigError as exc:
            logger.error("frobsAggregator config reload refused, keeping the previous one", error=str(exc))
            return
        if fresh != settings:
            settings = fresh
            _announce(logger, settings)

    config.subscribe(reloaded)
    upstream = Upstream(logger)
    lifecycle.add_shutdown_hook(upstream.close, label="frobs-aggregator upstream session")

    def source(name: str, path: str, field: str, key: str) -> Source:
        return Source(name, path, lambda items: tally(items, field, key), upstream=upstream, cache=cache, logger=logger)

    frobs = source("frobs", "/list", "status", "byStatus")
    flerps = source("flerps", "/flerp-batch", "kind", "byKind")

    async def summary(request: Request) -> JSONResponse:
        current = settings
        missing = missing_keys(current)
        if missing:
            raise ServiceUnavailableError(f"The frobs-aggregator plugin is not configured: set {' and '.join(missing)}")
        assert isinstance(current.frobs_url, str) and isinstance(current.flerps_url, str)
        timeout, fallback = current.timeout_seconds, current.fallback_ttl_seconds
        frobs_part, flerps_part = await asyncio.gather(
            frobs.part(current.frobs_url, timeout=timeout, fresh_ttl=0, fallback_ttl=fallback),
            flerps.part(
                current.flerps_url, timeout=timeout, fresh_ttl=current.flerps_cache_ttl_seconds, fallback_ttl=fallback
            ),
        )
        parts = {"frobs": frobs_part, "flerps": flerps_part}
        if nothing_to_show(parts):
            raise ServiceUnavailableError(unavailable_message(parts))
        return JSONResponse(compose(parts, await store.count_served()))

    router.add_route("/summary", summary, methods=["GET"], openapi=SUMMARY)


def _announce(logger: Logger, settings: FrobsAggregatorConfig) -> None:
    missing = missing_keys(settings)
    if missing:
        logger.warning(f"{' and '.join(missing)} not configured: /summary answers 503 until they are")
    else:
        logger.info(
            "frobs-aggregator upstreams",
            frobs=settings.frobs_url,
            flerps=settings.flerps_url,
            timeout=settings.timeout_seconds,
            flerps_cache_ttl=settings.flerps_cache_ttl_seconds,
        )

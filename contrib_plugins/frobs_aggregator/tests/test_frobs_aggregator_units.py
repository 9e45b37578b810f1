"""The pure parts and the cache rules in one process: ``tally``, ``compose``, ``Source`` with a stub upstream.

``Source`` gets a dict-backed cache, a stub upstream and a clock the test moves, so TTLs are
checked exactly, without waiting.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kernel_frobs_aggregator.sources import Source
from kernel_frobs_aggregator.summary import Part, compose, nothing_to_show, tally, unavailable_message
from kernel_frobs_aggregator.upstream import UpstreamError

from kernel.testing import RecordingLogger, wait_for_async


class DictCache:
    """A ``CacheService`` in a dict (TTLs recorded, not applied: ``Source`` checks ages itself)."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.ttls: dict[str, float | None] = {}
        self.reads = 0
        self.broken = False

    async def get(self, key: str) -> Any:
        self.reads += 1
        if self.broken:
            raise ConnectionError("redis is down")
        return self.data.get(key)

    async def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        if self.broken:
            raise ConnectionError("redis is down")
        self.data[key], self.ttls[key] = value, ttl


class StubUpstream:
    """Answers ``items`` (or raises ``failure``); ``gate`` holds every answer until it is set."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items
        self.failure: UpstreamError | None = None
        self.calls: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def get_list(self, name: str, url: str, *, timeout: float) -> list[Any]:
        self.calls.append(url)
        await self.gate.wait()
        if self.failure is not None:
            raise self.failure
        return self.items


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


ITEMS = [{"kind": "a"}, {"kind": "b"}, {"kind": "a"}]
URL = "http://flerps.test:8080"


def _source(upstream: StubUpstream, cache: DictCache, clock: Clock, logger: RecordingLogger | None = None) -> Source:
    return Source(
        "flerps",
        "/flerp-batch",
        lambda items: tally(items, "kind", "byKind"),
        upstream=upstream,  # type: ignore[arg-type]
        cache=cache,  # type: ignore[arg-type]
        logger=logger or RecordingLogger(),
        clock=clock,
    )


def _part(source: Source, fresh: float = 60, fallback: float = 600) -> Any:
    return source.part(URL, timeout=5, fresh_ttl=fresh, fallback_ttl=fallback)


# ---------------------------------------------------------------------------- pure functions


def test_tally_counts_by_field_and_calls_the_rest_unknown() -> None:
    items: list[Any] = [{"status": "x"}, {"status": "y"}, {"status": "x"}, {"status": 3}, {}, "frob", None, []]
    assert tally(items, "status", "byStatus") == {"count": 8, "byStatus": {"unknown": 5, "x": 2, "y": 1}}
    assert list(tally(items, "status", "byStatus")["byStatus"]) == ["unknown", "x", "y"]  # sorted
    assert tally([], "status", "byStatus") == {"count": 0, "byStatus": {}}


def test_compose_marks_partial_exactly_when_a_part_failed() -> None:
    live = Part("live", {"count": 1}, 0.0)
    stale = Part("stale", {"count": 2}, 1.5, "unreachable")
    missing = Part("missing", error="answered HTTP 500")
    body = compose({"frobs": live, "flerps": stale}, 7)
    assert body == {
        "frobs": {"count": 1},
        "flerps": {"count": 2},
        "summariesServed": 7,
        "sources": {
            "frobs": {"state": "live", "fetchedAt": "1970-01-01T00:00:00.000Z"},
            "flerps": {"state": "stale", "fetchedAt": "1970-01-01T00:00:01.500Z"},
        },
        "partial": True,
        "errors": {"flerps": "unreachable"},
    }
    assert compose({"frobs": live, "flerps": Part("cached", {}, 0.0)}, 1)["partial"] is False
    both = {"frobs": missing, "flerps": Part("missing", error="unreachable")}
    assert nothing_to_show(both) and not nothing_to_show({"frobs": missing, "flerps": stale})
    assert unavailable_message(both) == (
        "No upstream answered and nothing is cached: frobs answered HTTP 500; flerps unreachable"
    )


# ---------------------------------------------------------------------------- Source: TTLs and fallback


async def test_a_fresh_copy_is_served_until_the_ttl_then_asked_again() -> None:
    upstream, cache, clock = StubUpstream(ITEMS), DictCache(), Clock()
    source = _source(upstream, cache, clock)
    first = await _part(source)
    assert first == Part("live", {"count": 3, "byKind": {"a": 2, "b": 1}}, clock.now)
    assert upstream.calls == [f"{URL}/flerp-batch"]
    assert cache.ttls == {f"flerps:{URL}": 600}  # kept for the fallback, the longer of the two
    clock.now += 59.9
    assert await _part(source) == Part("cached", first.summary, first.fetched_at)
    assert len(upstream.calls) == 1
    clock.now += 0.1
    again = await _part(source)
    assert again.state == "live" and again.fetched_at == clock.now and len(upstream.calls) == 2


async def test_no_fresh_ttl_asks_every_time() -> None:
    upstream, cache, clock = StubUpstream(ITEMS), DictCache(), Clock()
    source = _source(upstream, cache, clock)
    for _ in range(3):
        assert (await _part(source, fresh=0)).state == "live"
    assert len(upstream.calls) == 3


async def test_a_failure_falls_back_to_the_last_good_copy_until_it_is_too_old() -> None:
    upstream, cache, clock = StubUpstream(ITEMS), DictCache(), Clock()
    source = _source(upstream, cache, clock)
    good = await _part(source)
    upstream.failure = UpstreamError("answered HTTP 502")
    clock.now += 61
    assert await _part(source) == Part("stale", good.summary, good.fetched_at, "answered HTTP 502")
    clock.now = good.fetched_at + 600  # the fallback TTL reached
    assert await _part(source) == Part("missing", None, None, "answered HTTP 502")


async def test_a_new_url_does_not_see_the_old_ones_copy() -> None:
    upstream, cache, clock = StubUpstream(ITEMS), DictCache(), Clock()
    source = _source(upstream, cache, clock)
    await _part(source)
    upstream.failure = UpstreamError("unreachable")
    other = await source.part("http://elsewhere.test", timeout=5, fresh_ttl=60, fallback_ttl=600)
    assert other == Part("missing", error="unreachable")


async def test_a_failing_cache_never_fails_the_part() -> None:
    upstream, cache, clock = StubUpstream(ITEMS), DictCache(), Clock()
    cache.broken = True
    logger = RecordingLogger()
    source = _source(upstream, cache, clock, logger)
    assert (await _part(source)).state == "live"
    assert (await _part(source)).state == "live"  # nothing cached: asked again
    assert logger.lines == ["cache read failed", "cache write failed"] * 2


# ---------------------------------------------------------------------------- Source: single flight


async def test_concurrent_misses_share_one_upstream_call() -> None:
    upstream, cache, clock = StubUpstream(ITEMS), DictCache(), Clock()
    source = _source(upstream, cache, clock)
    upstream.gate.clear()
    parts = [asyncio.ensure_future(_part(source)) for _ in range(10)]
    await wait_for_async(lambda: cache.reads == 10, 5)  # every caller is past the cache, waiting
    assert len(upstream.calls) == 1
    upstream.gate.set()
    results = await asyncio.gather(*parts)
    assert {r.state for r in results} == {"live"} and len({r.fetched_at for r in results}) == 1
    assert len(upstream.calls) == 1


async def test_a_shared_failure_reaches_every_caller() -> None:
    upstream, cache, clock = StubUpstream(ITEMS), DictCache(), Clock()
    source = _source(upstream, cache, clock)
    upstream.failure = UpstreamError("unreachable")
    upstream.gate.clear()
    parts = [asyncio.ensure_future(_part(source)) for _ in range(3)]
    await wait_for_async(lambda: cache.reads == 3, 5)
    upstream.gate.set()
    assert [p.state for p in await asyncio.gather(*parts)] == ["missing"] * 3
    assert len(upstream.calls) == 1


async def test_a_caller_that_goes_away_does_not_cancel_the_shared_call() -> None:
    upstream, cache, clock = StubUpstream(ITEMS), DictCache(), Clock()
    source = _source(upstream, cache, clock)
    upstream.gate.clear()
    leaving, staying = asyncio.ensure_future(_part(source)), asyncio.ensure_future(_part(source))
    await wait_for_async(lambda: cache.reads == 2, 5)
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    upstream.gate.set()
    assert (await staying).state == "live"
    assert f"flerps:{URL}" in cache.data and len(upstream.calls) == 1

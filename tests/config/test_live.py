"""kernel.config.live: LiveConfig reads the current config; replace swaps it and tells subscribers on change."""

from __future__ import annotations

import asyncio

from kernel.config import Config, LiveConfig


async def test_replace_swaps_the_config_and_calls_subscribers_only_on_change() -> None:
    live = LiveConfig(Config.from_dict({"app": {"title": "one", "port": 1}}, source="first"))
    seen: list[str] = []

    async def on_change(new: Config) -> None:
        await asyncio.sleep(0)
        seen.append(new.get_string("app.title"))

    unsubscribe = live.subscribe(on_change)
    assert live.get_string("app.title") == "one" and live.source("app.port") == "first"

    assert await live.replace(Config.from_dict({"app": {"title": "one", "port": 1}}, source="other")) is False
    assert seen == [] and live.source("app.port") == "first"  # same data: nothing happens

    new = Config.from_dict({"app": {"title": "two", "port": "2"}}, source="second")
    assert await live.replace(new) is True
    assert seen == ["two"] and live.current is new
    assert live.get_number("app.port") == 2 and live.source("app.port") == "second"
    assert live.get_config("app").to_dict() == {"title": "two", "port": "2"}

    unsubscribe()
    assert await live.replace(Config.from_dict({"app": {"title": "three"}})) is True
    assert seen == ["two"] and live.keys() == ["app"] and not live.has("app.port")


async def test_a_failing_subscriber_does_not_stop_the_others() -> None:
    live = LiveConfig(Config.from_dict({"n": 1}))
    calls: list[int] = []

    def broken(_: Config) -> None:
        raise RuntimeError("subscriber bug")

    live.subscribe(broken)
    live.subscribe(lambda c: calls.append(c.get("n")))
    assert await live.replace(Config.from_dict({"n": 2})) is True
    assert calls == [2] and live.get("n") == 2


async def test_a_pushed_snapshot_replaces_the_config_with_its_sources() -> None:
    live = LiveConfig(Config.from_dict({"backend": {"baseUrl": "http://one"}}, source="a.yaml"))
    pushed = Config.from_dict({"backend": {"baseUrl": 2}}, source="b.yaml").snapshot()
    assert await live.replace(Config.from_snapshot(pushed)) is True
    assert live.snapshot() == pushed and live.source("backend.baseUrl") == "b.yaml"

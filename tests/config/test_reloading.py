"""kernel.config.reloading: ReloadingConfig reloads its files on demand, on change or on an interval."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from kernel.config import Config, ConfigError, LiveConfig, ReloadingConfig, ReloadSettings


def _touch_later(path: Path, text: str) -> None:
    """Rewrite a file and move its mtime forward, so a change is seen whatever the clock resolution."""
    before = path.stat().st_mtime
    path.write_text(text)
    os.utime(path, (before + 5, before + 5))


async def test_reload_calls_subscribers_with_the_new_config(tmp_path: Path) -> None:
    base = tmp_path / "base.yaml"
    local = tmp_path / "local.yaml"
    base.write_text("app:\n  title: one\n  port: 1\n")
    local.write_text("app:\n  port: 2\n")
    config = ReloadingConfig([base, local], env={})
    seen: list[Config] = []
    unsubscribe = config.subscribe(seen.append)
    assert config.get_string("app.title") == "one" and config.get_number("app.port") == 2

    assert await config.reload() is False  # nothing changed: nobody is called
    base.write_text("app:\n  title: two\n  port: 1\n")
    assert await config.reload() is True
    assert [c.get_string("app.title") for c in seen] == ["two"]
    assert config.get_string("app.title") == "two" and config.source("app.port") == str(local)

    unsubscribe()
    base.write_text("app:\n  title: three\n")
    assert await config.reload() is True
    assert len(seen) == 1 and config.get_string("app.title") == "three"


async def test_a_broken_file_keeps_the_previous_config(tmp_path: Path) -> None:
    path = tmp_path / "app-config.yaml"
    path.write_text("app: {title: ok}\n")
    config = ReloadingConfig([path], env={})
    path.write_text("app: {title: [unclosed\n")
    assert await config.reload() is False
    assert config.get_string("app.title") == "ok"


async def test_validate_can_reject_a_new_config(tmp_path: Path) -> None:
    path = tmp_path / "app-config.yaml"
    path.write_text("app: {port: 1}\n")

    def validate(c: Config) -> None:
        if c.get_number("app.port") > 100:
            raise ConfigError("port too large")

    config = ReloadingConfig([path], env={}, validate=validate)
    path.write_text("app: {port: 1000}\n")
    assert await config.reload() is False and config.get_number("app.port") == 1


async def _wait_for(predicate: Any, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_watching_files_reloads_on_change_and_async_subscribers_run(tmp_path: Path) -> None:
    path = tmp_path / "app-config.yaml"
    path.write_text("backend:\n  config:\n    reload: {enabled: true, pollSeconds: 0.05}\napp: {n: 1}\n")
    config = ReloadingConfig([path], env={})
    seen: list[Any] = []

    async def on_change(new: Config) -> None:
        await asyncio.sleep(0)
        seen.append(new.get("app.n"))

    config.subscribe(on_change)
    await config.start()
    try:
        _touch_later(path, path.read_text().replace("n: 1", "n: 2"))
        await _wait_for(lambda: seen == [2])
        assert config.get_number("app.n") == 2
    finally:
        await config.stop()


async def test_a_file_still_being_written_is_read_only_once_it_holds_still(tmp_path: Path) -> None:
    # every half-written state parses, so only the settle keeps them out
    path = tmp_path / "app-config.yaml"
    head = "backend:\n  config:\n    reload: {enabled: true, pollSeconds: 0.1}\napp:\n"
    path.write_text(head + "  k0: 0\n")
    config = ReloadingConfig([path], env={})
    seen: list[int] = []
    config.subscribe(lambda c: seen.append(len(c.get("app"))))
    await config.start()
    try:
        with path.open("a") as f:  # a slow writer: a line every 10 ms for 0.6 s, six polls
            for i in range(1, 61):
                f.write(f"  k{i}: {i}\n")
                f.flush()
                await asyncio.sleep(0.01)
        await _wait_for(lambda: seen != [])
        assert seen == [61] and len(config.get("app")) == 61
    finally:
        await config.stop()


async def test_interval_reload_picks_up_changes_the_file_watch_cannot_see(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("first")
    path = tmp_path / "app-config.yaml"
    path.write_text("app:\n  key: {$file: secret.txt}\n")
    config = ReloadingConfig([path], env={})
    seen: list[str] = []
    config.subscribe(lambda c: seen.append(c.get_string("app.key")))
    await config.start(ReloadSettings(enabled=True, watch_files=False, interval_seconds=0.05))
    try:
        secret.write_text("second")
        await _wait_for(lambda: seen == ["second"])
    finally:
        await config.stop()


async def test_start_does_nothing_unless_enabled_and_a_failing_subscriber_is_contained(
    tmp_path: Path,
) -> None:
    path = tmp_path / "app-config.yaml"
    path.write_text("app: {n: 1}\n")
    config = ReloadingConfig([path], env={})
    await config.start()
    assert config._task is None
    calls: list[int] = []

    def broken(_: Config) -> None:
        raise RuntimeError("subscriber bug")

    config.subscribe(broken)
    config.subscribe(lambda c: calls.append(c.get("app.n")))
    path.write_text("app: {n: 2}\n")
    assert await config.reload() is True
    assert calls == [2]
    await config.stop()


async def test_it_is_a_live_config_whose_config_can_also_be_pushed(tmp_path: Path) -> None:
    path = tmp_path / "app-config.yaml"
    path.write_text("app: {n: 1}\n")
    config = ReloadingConfig([path], env={})
    assert isinstance(config, LiveConfig)
    seen: list[Any] = []
    config.subscribe(lambda c: seen.append(c.get("app.n")))
    assert await config.replace(Config.from_dict({"app": {"n": 5}})) is True
    assert seen == [5] and config.get("app.n") == 5
    assert await config.reload() is True  # the files win again at the next reload
    assert seen == [5, 1]

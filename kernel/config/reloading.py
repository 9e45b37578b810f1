"""``ReloadingConfig``: a ``LiveConfig`` that reloads its config files itself.

``backend.config.reload`` turns on an mtime poll of the files every ``pollSeconds`` and/or an
unconditional reload every ``intervalSeconds`` (which also sees ``$file`` and environment
changes the poll cannot). A changed file is read once it has held still for one poll, so a file
caught half-written (truncated, then written in place) is never taken for the new config even
where the half parses. Config from a URL (``kernel.config.remote``) is read again every
``remote_interval`` seconds (the reference system's ``remote.reloadIntervalSeconds``), whether
``backend.config.reload`` is on or not; a URL that cannot be read then is logged, as a file that
fails to load or validate is, and the previous config kept. Subscribers get the new ``Config`` only
when the merged data changed.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence

from kernel.config.live import LiveConfig
from kernel.config.loading import load_config
from kernel.config.reader import Config
from kernel.config.remote import is_url
from kernel.errors import ConfigError
from kernel.settings import ReloadSettings, read_reload_settings

__all__ = ["ReloadingConfig"]

log = logging.getLogger("kernel.config")

_Stamp = tuple[int, int, int] | None


def _stamp(path: str) -> _Stamp:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


class ReloadingConfig(LiveConfig):
    """A ``LiveConfig`` that always reads the latest config loaded from ``paths``; see the module doc.

    ``validate`` may reject a new config by raising ``ConfigError`` (the old one stays).
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]],
        initial: Config | None = None,
        *,
        env: Mapping[str, str] | None = None,
        validate: Callable[[Config], None] | None = None,
        remote_interval: float | None = None,
    ) -> None:
        """``remote_interval``: seconds between reads of the URLs among ``paths``; ``None`` refuses URLs."""
        self._paths = [os.fspath(p) for p in paths]
        self._env = env
        self._validate = validate
        self._remote = remote_interval is not None
        self._remote_interval = remote_interval if any(is_url(p) for p in self._paths) else None
        self._stamps = self._stamp_all()
        super().__init__(initial if initial is not None else self._load())
        self._task: asyncio.Task[None] | None = None
        self._last_error: str | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"ReloadingConfig({self._paths!r})"

    @property
    def paths(self) -> list[str]:
        """The config files it reads, in order."""
        return list(self._paths)

    async def start(self, settings: ReloadSettings | None = None) -> None:
        """Start watching as ``settings`` (default: ``backend.config.reload``) say; no-op unless enabled."""
        settings = settings if settings is not None else read_reload_settings(self._config)
        if not settings.enabled:
            settings = ReloadSettings(enabled=False, watch_files=False, interval_seconds=None)
        interval = min(filter(None, (settings.interval_seconds, self._remote_interval)), default=None)
        watch_files = settings.watch_files and any(not is_url(p) for p in self._paths)
        if self._task is None and (watch_files or interval):
            watched = ReloadSettings(True, watch_files, settings.poll_seconds, interval)
            self._task = asyncio.get_running_loop().create_task(self._watch(watched))

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _watch(self, s: ReloadSettings) -> None:
        interval = s.interval_seconds
        step = min(s.poll_seconds if s.watch_files else math.inf, interval or math.inf)
        loop = asyncio.get_running_loop()
        due = loop.time() + interval if interval else math.inf
        seen = self._stamps  # the stamps at the last poll: a change is read once they hold still
        while True:
            await asyncio.sleep(step)
            now = loop.time()
            changed = False
            if s.watch_files:
                stamps = self._stamp_all()
                changed = stamps != self._stamps and stamps == seen
                seen = stamps
            if now >= due or changed:
                if now >= due and interval:
                    due = now + interval
                await self.reload()

    def _stamp_all(self) -> list[_Stamp]:
        return [None if is_url(p) else _stamp(p) for p in self._paths]

    def _load(self) -> Config:
        return load_config(self._paths, self._env, remote=self._remote)

    @property
    def last_error(self) -> str | None:
        """Why the last ``reload`` kept the previous config (``None``: it loaded)."""
        return self._last_error

    async def reload(self) -> bool:
        """Load the files now; True if the config changed (subscribers were then called)."""
        async with self._lock:
            stamps = self._stamp_all()
            try:
                new = await asyncio.to_thread(self._load)
                if self._validate is not None:
                    self._validate(new)
            except ConfigError as exc:
                if str(exc) != self._last_error:  # a half-written file: say it once, retry next poll
                    log.warning("config reload failed, keeping the previous config: %s", exc)
                self._last_error = str(exc)
                return False
            self._last_error = None
            self._stamps = stamps
            if not self._swap(new):
                return False
            log.info("config reloaded from %s", ", ".join(self._paths) or "the environment")
        await self._notify(new)
        return True

"""``LiveConfig``: a ``RootConfig`` over the current ``Config`` that can be replaced while the process runs.

Whoever learns of a new config (a file watcher, or a process told by the supervisor) calls
``replace(new)``; when the merged data changed, every subscriber gets the new ``Config``.
Getters read the current config; those that return sub-configs return snapshots of it.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from kernel.config.reader import Config, ConfigSnapshot

__all__ = ["LiveConfig", "Subscriber"]

log = logging.getLogger("kernel.config")

#: called with the new ``Config`` after a change; may be sync or async
Subscriber = Callable[[Config], Any]


class LiveConfig:
    """A ``RootConfig`` whose config ``replace`` swaps; see the module doc."""

    def __init__(self, initial: Config) -> None:
        self._config = initial
        self._subscribers: list[Subscriber] = []

    @property
    def current(self) -> Config:
        return self._config

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(new_config)`` (sync or async) after each change; returns an unsubscribe."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    async def replace(self, new: Config) -> bool:
        """Make ``new`` the current config; True if its data differs (subscribers were then called)."""
        if not self._swap(new):
            return False
        await self._notify(new)
        return True

    def _swap(self, new: Config) -> bool:
        if new.to_dict() == self._config.to_dict():
            return False
        self._config = new
        return True

    async def _notify(self, new: Config) -> None:
        for callback in list(self._subscribers):
            try:
                result = callback(new)
                if inspect.isawaitable(result):
                    await result
            except Exception:  # a subscriber's bug must not stop the others, nor later changes
                log.exception("config subscriber %r failed", callback)

    # -- the Config API, read from the current config

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._config!r})"

    def keys(self) -> list[str]:
        return self._config.keys()

    def has(self, key: str) -> bool:
        return self._config.has(key)

    def source(self, key: str | None = None) -> str | None:
        return self._config.source(key)

    def to_dict(self) -> dict[str, Any]:
        return self._config.to_dict()

    def get(self, key: str | None = None) -> Any:
        return self._config.get(key)

    def get_optional(self, key: str | None = None) -> Any | None:
        return self._config.get_optional(key)

    def get_string(self, key: str) -> str:
        return self._config.get_string(key)

    def get_optional_string(self, key: str) -> str | None:
        return self._config.get_optional_string(key)

    def get_number(self, key: str) -> int | float:
        return self._config.get_number(key)

    def get_optional_number(self, key: str) -> int | float | None:
        return self._config.get_optional_number(key)

    def get_boolean(self, key: str) -> bool:
        return self._config.get_boolean(key)

    def get_optional_boolean(self, key: str) -> bool | None:
        return self._config.get_optional_boolean(key)

    def get_string_list(self, key: str) -> list[str]:
        return self._config.get_string_list(key)

    def get_optional_string_list(self, key: str) -> list[str] | None:
        return self._config.get_optional_string_list(key)

    def get_config(self, key: str) -> Config:
        return self._config.get_config(key)

    def get_optional_config(self, key: str) -> Config | None:
        return self._config.get_optional_config(key)

    def get_config_list(self, key: str) -> list[Config]:
        return self._config.get_config_list(key)

    def get_optional_config_list(self, key: str) -> list[Config] | None:
        return self._config.get_optional_config_list(key)

    def snapshot(self) -> ConfigSnapshot:
        """The current config's ``ConfigSnapshot``."""
        return self._config.snapshot()

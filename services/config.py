"""Config service extras: secrets (from plugin schemas and key names), plugin schema checks, reloading.

Secrets
    A field of a plugin's config schema (msgspec types) is secret when its type
    carries ``msgspec.Meta(extra={"secret": True})``, e.g. ``token: Secret``
    with ``Secret = Annotated[str, msgspec.Meta(extra={"secret": True})]``.
    The mark may sit on any type (a whole sub-object is then secret) and works
    through ``Optional``, lists (every item) and dicts (every value). Besides,
    any config key whose name matches ``SECRET_KEY_RE`` (password, token,
    secret, api key, private key, authorization) is secret wherever it is,
    unless its value is an object (then its children are looked at instead).

Plugin schemas
    A plugin's ``config_schema`` validates the top-level config key named after
    the plugin id (``hello:`` for plugin ``hello``); an absent key is checked
    as ``{}``, so a schema with only defaulted fields accepts it and a required
    field is reported as missing.

Reloading
    ``ReloadingConfig`` wraps the config files and always reads the current
    ``Config``; ``backend.config.reload`` turns on an mtime poll of the files
    and/or an unconditional reload every ``intervalSeconds``. Subscribers get
    the new ``Config`` only when the merged data changed.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import logging
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Final

import msgspec
import msgspec.inspect as mi

from kernel.api import Secret
from kernel.config import SECRET, Config, ConfigError, load_config, read_section
from kernel.core_services import RootConfig

__all__ = [
    "SECRET",
    "SECRET_KEY_RE",
    "ReloadSettings",
    "ReloadingConfig",
    "Secret",
    "is_secret_key",
    "plugin_secret_paths",
    "read_reload_settings",
    "redact_secrets",
    "schema_secret_paths",
    "secret_values",
    "validate_plugin_config",
]

log = logging.getLogger("kernel.config")


SECRET_KEY_RE: Final = re.compile(
    r"pass(?:word|wd|phrase)|token|secret|api[-_]?key|private[-_]?key|authorization", re.IGNORECASE
)
#: secret values shorter than this are not searched for in log text (too likely to be ordinary words)
MIN_SECRET_LENGTH: Final = 4


def is_secret_key(key: str) -> bool:
    """True for key names that hold secrets by convention (``dbPassword``, ``apiToken``...)."""
    return SECRET_KEY_RE.search(key) is not None


# ---------------------------------------------------------------------------- secrets in schemas


def schema_secret_paths(schema: Any, prefix: str = "") -> list[str]:
    """Dot paths (under ``prefix``) of the values a msgspec schema marks secret; ``*`` is any dict key."""
    out: list[str] = []
    _collect(mi.type_info(schema), prefix, out, frozenset())
    return list(dict.fromkeys(out))


def _join(path: str, part: str) -> str:
    return f"{path}.{part}" if path else part


def _collect(t: mi.Type, path: str, out: list[str], seen: frozenset[int]) -> None:
    if isinstance(t, mi.Metadata):
        if (t.extra or {}).get("secret") is True and path:
            out.append(path)
        else:
            _collect(t.type, path, out, seen)
    elif isinstance(t, (mi.StructType, mi.TypedDictType, mi.DataclassType)):
        if id(t.cls) in seen:  # recursive schema
            return
        for f in t.fields:
            _collect(f.type, _join(path, f.encode_name), out, seen | {id(t.cls)})
    elif isinstance(t, (mi.ListType, mi.SetType, mi.FrozenSetType, mi.VarTupleType)):
        _collect(t.item_type, path, out, seen)
    elif isinstance(t, mi.TupleType):
        for item in t.item_types:
            _collect(item, path, out, seen)
    elif isinstance(t, mi.DictType):
        _collect(t.value_type, _join(path, "*"), out, seen)
    elif isinstance(t, mi.UnionType):
        for member in t.types:
            _collect(member, path, out, seen)


def plugin_secret_paths(schemas: Mapping[str, Any]) -> list[str]:
    """Secret paths of every plugin's schema, each under its plugin id; ``None`` schemas are skipped."""
    paths: list[str] = []
    for plugin_id, schema in schemas.items():
        if schema is not None:
            try:
                paths.extend(schema_secret_paths(schema, plugin_id))
            except (TypeError, ValueError):  # not a msgspec type: reported by `kernel config check`
                continue
    return paths


# ---------------------------------------------------------------------------- secrets in data

_Slot = tuple[Any, Any]  # (container, key) of a secret value


def _matches(path: tuple[str, ...], patterns: Sequence[tuple[str, ...]]) -> bool:
    return any(len(p) == len(path) and all(a == "*" or a == b for a, b in zip(p, path, strict=True)) for p in patterns)


def _slots(node: Any, path: tuple[str, ...], patterns: Sequence[tuple[str, ...]]) -> Iterator[_Slot]:
    if isinstance(node, dict):
        for key, value in node.items():
            here = (*path, str(key))
            if _matches(here, patterns) or (is_secret_key(str(key)) and not isinstance(value, dict)):
                yield node, key
            else:
                yield from _slots(value, here, patterns)
    elif isinstance(node, list):
        for item in node:  # arrays are transparent: a path reaches into every item
            yield from _slots(item, path, patterns)


def _patterns(paths: Iterable[str]) -> list[tuple[str, ...]]:
    return [tuple(p.split(".")) for p in paths if p]


def redact_secrets(data: Mapping[str, Any] | Config, paths: Iterable[str] = ()) -> dict[str, Any]:
    """Deep copy of config data with every secret (schema ``paths`` and secret key names) as ``<secret>``."""
    out: dict[str, Any] = data.to_dict() if isinstance(data, Config) else copy.deepcopy(dict(data))
    for container, key in list(_slots(out, (), _patterns(paths))):
        container[key] = SECRET
    return out


def secret_values(data: Mapping[str, Any] | Config, paths: Iterable[str] = ()) -> set[str]:
    """The secret strings in config data (at least ``MIN_SECRET_LENGTH`` long), for log redaction."""
    raw = data.to_dict() if isinstance(data, Config) else dict(data)
    found: set[str] = set()
    for container, key in _slots(raw, (), _patterns(paths)):
        _strings(container[key], found)
    return {v for v in found if len(v) >= MIN_SECRET_LENGTH}


def _strings(value: Any, into: set[str]) -> None:
    if isinstance(value, str):
        into.add(value.strip())
    elif isinstance(value, dict):
        for v in value.values():
            _strings(v, into)
    elif isinstance(value, list):
        for v in value:
            _strings(v, into)


# ---------------------------------------------------------------------------- plugin schemas

_AT_RE: Final = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<at>[^`]*)`)?$", re.DOTALL)
_MISSING_RE: Final = re.compile(r"^Object missing required field `(?P<field>[^`]+)`$")


def validate_plugin_config(config: RootConfig | Config, plugin_id: str, schema: Any) -> list[str]:
    """Problems with config key ``<plugin_id>`` against the plugin's schema, each naming key and source."""
    value = config.get_optional(plugin_id)
    try:
        msgspec.convert({} if value is None else value, schema, strict=False)
    except msgspec.ValidationError as exc:
        m = _AT_RE.match(str(exc))
        assert m is not None
        msg, at = m.group("msg"), m.group("at") or ""
        key = plugin_id + at
        missing = _MISSING_RE.match(msg)
        if missing is not None:
            key = f"{key}.{missing.group('field')}"
        source = _nearest_source(config, key)
        where = f" in '{source}'" if source else ""
        return [f"plugin '{plugin_id}': invalid config at '{key}'{where}: {msg}"]
    except (TypeError, ValueError) as exc:
        return [f"plugin '{plugin_id}': its config_schema {schema!r} is not a msgspec type: {exc}"]
    return []


def _nearest_source(config: RootConfig | Config, key: str) -> str | None:
    """Source of ``key`` or of its closest existing parent (array indexes and ``[...]`` are cut)."""
    parts = re.sub(r"\[[^\]]*\]", "", key).split(".")
    while parts:
        try:
            source = config.source(".".join(parts))
        except ConfigError:
            source = None
        if source is not None:
            return source
        parts.pop()
    return None


# ---------------------------------------------------------------------------- reloading


class ReloadSettings(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    """``backend.config.reload``."""

    enabled: bool = False
    watch_files: bool = True  # poll the config files' mtimes every pollSeconds
    poll_seconds: float = 1.0
    interval_seconds: float | None = None  # also reload unconditionally this often


def read_reload_settings(config: Config) -> ReloadSettings:
    settings = read_section(config, "backend.config.reload", ReloadSettings)
    for name, v in (("pollSeconds", settings.poll_seconds), ("intervalSeconds", settings.interval_seconds)):
        if v is not None and not (v > 0 and math.isfinite(v)):
            raise ConfigError(f"Invalid config: backend.config.reload.{name} must be a positive number")
    return settings


Subscriber = Callable[[Config], Any]
_Stamp = tuple[int, int, int] | None


def _stamp(path: str) -> _Stamp:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


class ReloadingConfig:
    """A ``RootConfig`` that always reads the latest config loaded from ``paths``; see the module doc.

    Getters that return sub-configs (``get_config``...) return snapshots of the current config.
    ``validate`` may reject a new config by raising ``ConfigError`` (the old one stays).
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]],
        initial: Config | None = None,
        *,
        env: Mapping[str, str] | None = None,
        validate: Callable[[Config], None] | None = None,
    ) -> None:
        self._paths = [os.fspath(p) for p in paths]
        self._env = env
        self._validate = validate
        self._stamps = self._stamp_all()
        self._config = initial if initial is not None else load_config(self._paths, env)
        self._subscribers: list[Subscriber] = []
        self._task: asyncio.Task[None] | None = None
        self._last_error: str | None = None
        self._lock = asyncio.Lock()

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

    # -- watching

    async def start(self, settings: ReloadSettings | None = None) -> None:
        """Start watching as ``settings`` (default: ``backend.config.reload``) say; no-op unless enabled."""
        settings = settings if settings is not None else read_reload_settings(self._config)
        if self._task is None and settings.enabled and (settings.watch_files or settings.interval_seconds):
            self._task = asyncio.get_running_loop().create_task(self._watch(settings))

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
        while True:
            await asyncio.sleep(step)
            now = loop.time()
            if now >= due or (s.watch_files and self._stamp_all() != self._stamps):
                if now >= due and interval:
                    due = now + interval
                await self.reload()

    def _stamp_all(self) -> list[_Stamp]:
        return [_stamp(p) for p in self._paths]

    async def reload(self) -> bool:
        """Load the files now; True if the config changed (subscribers were then called)."""
        async with self._lock:
            stamps = self._stamp_all()
            try:
                new = await asyncio.to_thread(load_config, self._paths, self._env)
                if self._validate is not None:
                    self._validate(new)
            except ConfigError as exc:
                if str(exc) != self._last_error:  # a half-written file: say it once, retry next poll
                    log.warning("config reload failed, keeping the previous config: %s", exc)
                self._last_error = str(exc)
                return False
            self._last_error = None
            self._stamps = stamps
            if new.to_dict() == self._config.to_dict():
                return False
            self._config = new
            log.info("config reloaded from %s", ", ".join(self._paths) or "the environment")
        for callback in list(self._subscribers):
            try:
                result = callback(new)
                if inspect.isawaitable(result):
                    await result
            except Exception:  # a subscriber's bug must not stop reloading
                log.exception("config subscriber %r failed", callback)
        return True

    # -- the Config API, read from the current config

    def __repr__(self) -> str:
        return f"ReloadingConfig({self._paths!r})"

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

"""``scope_config``: the part of the config one plugin's workers get, and which key paths it withholds, and why.

A worker gets:

* its plugin's own section ``<pluginId>``, whole, its secrets included;
* the runtime sections the worker process and the core services read (``RUNTIME_SECTIONS``:
  ``app``, ``backend``, ``discovery``, ``permission``) without their secrets, except
  ``WORKER_LOGIN``: the database and cache connections and the plugin signing keys, **the
  plugin's own login**: with ``login`` (the supervisor's, ``services.plugin_logins``) its PostgreSQL
  role's user and password replace the kernel's under ``backend.database``, and its Redis ACL user's
  under ``backend.cache``; without the gateway's parts (``GATEWAY_ONLY``: ``backend.auth.externalAccess`` and the rate limiter's ``backend.rateLimit.store``, never a
  worker's, whatever it declares) nor other plugins' database settings
  (``backend.database.plugin.<other>``);
* the paths its plugin and modules declare in ``config_reads`` (``create_plugin``,
  ``create_module``), without their secrets, except those named in ``config_secrets``.

Secret, outside its own section: a key whose name says so (``kernel.config.secrets``), a value a
plugin's schema marks (``Secret``), and, in the declared reads, any value a ``$env``, ``$file``
or ``${VAR}`` produced (``Config.derived``). In the runtime sections a value's origin does not
make it secret: ``backend.listen.port: ${PORT}`` is a setting the worker needs.

Everything else is withheld: the scoped ``Config`` knows each withheld path, and reading it (or
below it) is a ``ConfigError`` that names it and says why. No I/O here.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, Protocol

from kernel.config.reader import Config, Hidden
from kernel.config.secrets import is_secret_key

__all__ = ["GATEWAY_ONLY", "RUNTIME_SECTIONS", "WORKER_LOGIN", "Declares", "plugin_config", "scope_config"]

Path = tuple[str, ...]

#: top-level sections the worker runtime and the core services read (their non-secret parts)
RUNTIME_SECTIONS: Final = ("app", "backend", "discovery", "permission")
#: the gateway's alone: never sent to a worker
GATEWAY_ONLY: Final[tuple[Path, ...]] = (
    ("backend", "auth", "externalAccess"),
    ("backend", "rateLimit", "store"),  # the gateways count requests; its connection holds a password
)
#: the plugin's own login: the secrets of the runtime sections a worker needs to connect. Under
#: ``backend.database`` the plugin's PostgreSQL role replaces the kernel's login (``login``, when the
#: supervisor made the roles), under ``backend.cache`` its Redis user (when it made the users)
WORKER_LOGIN: Final[tuple[Path, ...]] = (
    ("backend", "database"),
    ("backend", "cache"),
    ("backend", "auth", "pluginKeyStore"),
)
_DATABASE_PLUGINS: Final = ("backend", "database", "plugin")


def _split(paths: Iterable[str]) -> list[Path]:
    return [tuple(p.split(".")) for p in paths if p]


def _under(path: Path, roots: Iterable[Path]) -> bool:
    """True when ``path`` is one of ``roots`` or below one (``*`` in a root is any key)."""
    return any(len(path) >= len(r) and all(a == "*" or a == b for a, b in zip(r, path, strict=False)) for r in roots)


def _pick(node: Any, tails: Sequence[Path], path: Path, hidden: Hidden, why: str) -> Any:
    """The parts of ``node`` the ``tails`` reach; the keys they do not reach go to ``hidden``."""
    if any(not t for t in tails) or not isinstance(node, dict):
        return copy.deepcopy(node)
    out: dict[str, Any] = {}
    for key, value in node.items():
        sub = [t[1:] for t in tails if t[0] == key]
        if sub:
            out[key] = _pick(value, sub, (*path, key), hidden, why)
        else:
            hidden[(*path, key)] = why
    return out


def _strip(node: Any, path: Path, secret: Callable[[Path, str, Any], bool], hidden: Hidden, why: str) -> None:
    """Remove (in place) each value of ``node`` that ``secret(path, key, value)`` says is secret."""
    if isinstance(node, dict):
        for key in list(node):
            here = (*path, str(key))
            if secret(here, str(key), node[key]):
                del node[key]
                hidden.setdefault(here, why)
            else:
                _strip(node[key], here, secret, hidden, why)
    elif isinstance(node, list):  # arrays are transparent: a path reaches into every item
        for item in node:
            _strip(item, path, secret, hidden, why)


def _at(data: dict[str, Any], path: Path) -> Any:
    node: Any = data
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _put(data: dict[str, Any], path: Path, value: Any) -> None:
    """``value`` at ``path`` (under ``WORKER_LOGIN`` only), replacing what the kernel's config has there."""
    if not _under(path, WORKER_LOGIN):
        raise ValueError(f"a plugin's login is set under backend.database or backend.cache, not at {'.'.join(path)}")
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            return
    node[path[-1]] = copy.deepcopy(value)


def _remove(data: dict[str, Any], path: Path, hidden: Hidden, why: str) -> None:
    node = _at(data, path[:-1])
    if isinstance(node, dict) and path[-1] in node:
        del node[path[-1]]
        hidden[path] = why


def scope_config(
    config: Config,
    plugin_id: str,
    *,
    reads: Iterable[str] = (),
    secrets: Iterable[str] = (),
    secret_paths: Iterable[str] = (),
    login: Mapping[str, Any] | None = None,
) -> Config:
    """What plugin ``plugin_id``'s workers get of ``config`` (see the module doc).

    ``reads``/``secrets``: its and its modules' ``config_reads``/``config_secrets``; ``secret_paths``:
    the paths plugins' schemas mark secret (``kernel.config.plugin_secret_paths``); ``login``: the
    plugin's own login, dotted path to value, in place of the kernel's (paths under ``WORKER_LOGIN``).
    """
    who = f"plugin '{plugin_id}'"
    declared = _split(reads)
    asked = _split(secrets)
    marked = _split(secret_paths)
    hidden: Hidden = {}
    tails = [(plugin_id,), *((s,) for s in RUNTIME_SECTIONS), *declared]
    other = f"{who}: it is another plugin's section; declare it in create_plugin(config_reads=...) to read it"
    data: dict[str, Any] = _pick(config.to_dict(), tails, (), hidden, other)

    for path in GATEWAY_ONLY:
        _remove(data, path, hidden, f"{who}: it is the gateway's alone, never a worker's")
    for dotted, value in (login or {}).items():
        _put(data, tuple(dotted.split(".")), value)
    databases = _at(data, _DATABASE_PLUGINS)
    for pid in list(databases) if isinstance(databases, dict) else ():
        if pid != plugin_id:
            _remove(data, (*_DATABASE_PLUGINS, pid), hidden, f"{who}: it is another plugin's database")

    connects = [*WORKER_LOGIN, *asked]

    def runtime_secret(path: Path, key: str, value: Any) -> bool:
        return is_secret_key(key) and not isinstance(value, dict) and not _under(path, connects)

    def declared_secret(path: Path, key: str, value: Any) -> bool:
        return _is_secret(path, key, value, marked, config.derived) and not _under(path, asked)

    ask = f"{who}: it is a secret; declare it in create_plugin(config_secrets=...) to read it"
    kernels = f"{who}: it is a secret of the kernel's settings, not one a worker needs"
    for section in list(data):
        if section == plugin_id:
            continue  # its own section, whole
        if section in RUNTIME_SECTIONS:
            _strip(data[section], (section,), runtime_secret, hidden, kernels)
        else:
            _strip(data[section], (section,), declared_secret, hidden, ask)
    return Config(data, _sources(config, data), hidden=hidden)


def _is_secret(path: Path, key: str, value: Any, marked: Sequence[Path], derived: frozenset[Path]) -> bool:
    """A secret outside the runtime sections: by its name, a schema's mark, or a directive's origin."""
    if is_secret_key(key) and not isinstance(value, dict):
        return True
    exact = any(len(m) == len(path) and _under(path, [m]) for m in marked)
    return exact or path in derived


def _sources(config: Config, data: dict[str, Any]) -> dict[Path, str]:
    """The sources of the keys ``data`` kept."""
    snapshot = config.snapshot()
    out: dict[Path, str] = {}
    for parts, source in snapshot.sources:
        if _at(data, tuple(parts)) is not None:
            out[tuple(parts)] = source
    return out


class Declares(Protocol):
    """What a plugin declares of the config it reads (``kernel.registry.PluginEntry``)."""

    @property
    def id(self) -> str: ...
    @property
    def secret_paths(self) -> tuple[str, ...]: ...
    def reads(self) -> tuple[str, ...]: ...
    def secrets(self) -> tuple[str, ...]: ...


def plugin_config(
    config: Config, plugin: Declares, *, scoped: bool = True, login: Mapping[str, Any] | None = None
) -> Config:
    """What ``plugin``'s workers get of ``config``: its scope, with its own ``login`` (see ``scope_config``),
    or the whole config when scoping is off (``backend.workers.scopeConfig: false``), the plugin's own
    ``login`` in it all the same (the kernel's is then elsewhere in it: the whole config is no boundary)."""
    if not scoped:  # the whole config, but the plugin's own login all the same
        if not login:
            return config
        data = config.to_dict()
        for dotted, value in login.items():
            _put(data, tuple(dotted.split(".")), value)
        return Config(data, _sources(config, data))
    return scope_config(
        config,
        plugin.id,
        reads=plugin.reads(),
        secrets=plugin.secrets(),
        secret_paths=plugin.secret_paths,
        login=login,
    )

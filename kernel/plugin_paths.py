"""Where each plugin is served: ``<backend.gateway.mount>/<pluginId>``, or where a function says.

The reference system's ``httpRouterFactory({getPath})``: a package's ``kernel_http_router_options``
returns ``HttpRouterOptions(get_path=...)``, a function of the plugin id (``lambda id: f"/plugins/{id}"``).
Each process loads the hooks (``kernel.registry.load_registry``, the test backend) and keeps the chosen
function here (``choose_from``), so the gateway (which plugin a path reaches), the worker (the
plugin's root path) and discovery (its base URLs, for other plugins and the gateway's key lookups)
agree. ``path_of`` checks what the function answers: an absolute path, no trailing ``/``, no ``.``
segments, nothing under ``/.kernel`` (the kernel's own endpoints), else a ``ConfigError`` naming the plugin.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kernel.errors import ConfigError

__all__ = ["PathFunction", "choose", "choose_from", "chosen", "path_of"]

PathFunction = Callable[[str], str]
_KERNEL_PATHS = "/.kernel"

_chosen: list[PathFunction | None] = [None]


def choose(get_path: PathFunction | None) -> None:
    """Serve plugins where ``get_path`` says (``None``: under the mount)."""
    _chosen[0] = get_path


def choose_from(manager: Any) -> None:
    """The function of the ``kernel_http_router_options`` hook of ``manager``'s packages (a pluggy manager)."""
    options = manager.hook.kernel_http_router_options()
    choose(getattr(options, "get_path", None))


def chosen() -> PathFunction | None:
    return _chosen[0]


def path_of(plugin_id: str, mount: str) -> str:
    """The path plugin ``plugin_id`` is served at (no trailing slash)."""
    get_path = _chosen[0]
    if get_path is None:
        base = mount.strip().strip("/")
        return f"/{base}/{plugin_id}" if base else f"/{plugin_id}"
    try:
        path = get_path(plugin_id)
    except Exception as exc:  # the package's function
        raise ConfigError(f"getPath failed for plugin '{plugin_id}': {type(exc).__name__}: {exc}") from None
    if not isinstance(path, str) or not path.startswith("/") or path == "/" or path.endswith("/"):
        raise ConfigError(
            f"getPath gave {path!r} for plugin '{plugin_id}': a path must start with '/' and not end with one"
        )
    segments = path.split("/")[1:]
    if any(s in ("", ".", "..") for s in segments) or any(c in path for c in "?#%"):
        raise ConfigError(f"getPath gave {path!r} for plugin '{plugin_id}': empty, '.' or '..' segments, or ?#%")
    if path == _KERNEL_PATHS or path.startswith(_KERNEL_PATHS + "/"):
        raise ConfigError(f"getPath gave {path!r} for plugin '{plugin_id}': /.kernel is the kernel's own")
    return path

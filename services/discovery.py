"""The discovery service: base URLs of plugins, from config (Backstage's HostDiscovery rules).

* internal: ``http://<listen host>:<listen port>`` + the plugin's path; a wildcard listen
  host (``0.0.0.0`` → ``127.0.0.1``, ``::`` or empty → ``localhost``) becomes a loopback name.
* external: ``backend.baseUrl`` + the plugin's path (the internal origin when no baseUrl).
* the plugin's path: ``<mount>/<pluginId>``, or the ``getPath`` of ``kernel_http_router_options``
  (``kernel.plugin_paths``), the same the gateway routes by.
* ``discovery.endpoints: [{target, plugins: [ids]}]`` overrides both for the listed plugins; the
  first entry listing a plugin wins. ``target`` is a URL or ``{internal, external}`` (a missing
  side keeps the default); ``{{pluginId}}`` in a target is replaced by the plugin id.
* host, port, mount (``backend.gateway.mount``) and ``backend.baseUrl`` come from the kernel's
  settings (``kernel.api.read_settings``), with their one set of defaults; no URL ends with a slash.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import quote

import msgspec

from kernel.api import (
    ConfigError,
    ConfigReader,
    Discovery,
    RootConfig,
    ServiceFactory,
    Settings,
    core_services,
    create_service_factory,
    plugin_path,
    read_settings,
)

__all__ = ["DiscoveryEndpoint", "EndpointTarget", "HostDiscovery", "read_discovery_endpoints"]

_PLACEHOLDER: Final = re.compile(r"\{\{\s*pluginId\s*\}\}")
_WILDCARD_HOSTS: Final = {"0.0.0.0": "127.0.0.1", "::": "localhost", "": "localhost"}


class EndpointTarget(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    internal: str | None = None
    external: str | None = None


class DiscoveryEndpoint(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    target: str | EndpointTarget
    plugins: list[str]


def read_discovery_endpoints(config: ConfigReader) -> list[DiscoveryEndpoint]:
    """``discovery.endpoints``, validated; a mistake is a ``ConfigError`` naming the key."""
    raw = config.get_optional("discovery.endpoints")
    try:
        return msgspec.convert(raw or [], list[DiscoveryEndpoint])
    except msgspec.ValidationError as exc:
        msg = str(exc).replace("`$", "`discovery.endpoints")
        raise ConfigError(f"Invalid config under 'discovery.endpoints': {msg}") from None


def _internal_origin(settings: Settings) -> str:
    host = settings.listen.host.strip()
    host = _WILDCARD_HOSTS.get(host, host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.listen.port}"


class HostDiscovery:
    """A ``Discovery``: see the module doc. ``from_config`` reads the settings once."""

    def __init__(
        self,
        internal_base: str,
        external_base: str,
        endpoints: list[DiscoveryEndpoint] | None = None,
        *,
        mount: str | None = None,
    ) -> None:
        """``<base>/<pluginId>``; with ``mount``, the bases are origins and each plugin's path is
        ``kernel.api.plugin_path(pluginId, mount)``."""
        self._internal = internal_base.rstrip("/")
        self._external = external_base.rstrip("/")
        self._endpoints = list(endpoints or [])
        self._mount = mount

    @property
    def internal_base(self) -> str:
        """Where this kernel's own plugins are reached, without their paths (``http://host:port``)."""
        return self._internal

    @classmethod
    def from_config(cls, config: ConfigReader) -> HostDiscovery:
        settings = read_settings(config)
        internal = _internal_origin(settings)
        external = (settings.base_url or internal).strip().rstrip("/")
        return cls(internal, external, read_discovery_endpoints(config), mount=settings.gateway.mount)

    def _target(self, plugin_id: str, side: str) -> str:
        encoded = quote(plugin_id, safe="")
        for endpoint in self._endpoints:
            if plugin_id in endpoint.plugins:
                target = endpoint.target
                url = target if isinstance(target, str) else getattr(target, side)
                if url is not None:
                    return _PLACEHOLDER.sub(encoded, url).rstrip("/")
                break
        base = self._internal if side == "internal" else self._external
        if self._mount is not None:
            return base + plugin_path(plugin_id, self._mount)
        return f"{base}/{encoded}"

    async def get_base_url(self, plugin_id: str) -> str:
        """Where other plugins (and this one) reach ``plugin_id``'s API."""
        return self._target(plugin_id, "internal")

    async def get_external_base_url(self, plugin_id: str) -> str:
        """Where the outside world reaches ``plugin_id``'s API."""
        return self._target(plugin_id, "external")


class _LiveDiscovery:
    """Follows config reloads when the root config supports ``subscribe``."""

    def __init__(self, config: RootConfig) -> None:
        self._current = HostDiscovery.from_config(config)
        subscribe: Callable[[Callable[[ConfigReader], None]], Any] | None = getattr(config, "subscribe", None)
        if subscribe is not None:
            subscribe(self._refresh)

    def _refresh(self, config: ConfigReader) -> None:
        try:
            self._current = HostDiscovery.from_config(config)
        except ConfigError:
            pass  # keep the previous endpoints; `kernel config check` reports the mistake

    async def get_base_url(self, plugin_id: str) -> str:
        return await self._current.get_base_url(plugin_id)

    async def get_external_base_url(self, plugin_id: str) -> str:
        return await self._current.get_external_base_url(plugin_id)


@create_service_factory(core_services.discovery, {"config": core_services.root_config})
def _discovery(config: RootConfig) -> Discovery:
    return _LiveDiscovery(config)


FACTORIES: list[ServiceFactory] = [_discovery]

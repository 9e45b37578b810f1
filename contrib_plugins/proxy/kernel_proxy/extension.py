"""The proxy's extension point, for modules that add endpoints in code rather than in the config.

The reference system's ``proxyEndpointsExtensionPoint``: a module of plugin ``proxy`` (its
``kernel.plugins`` entry point names the module object) asks for ``proxy_endpoints_extension_point``
and adds endpoints while it starts, before the proxy's own init:

```python
# acme_proxy.py; entry point in kernel.plugins:  proxy-acme = "acme_proxy:module"
from kernel.api import create_module
from kernel_proxy.extension import proxy_endpoints_extension_point

module = create_module(plugin_id="proxy", module_id="acme")

@module.init(proxy=proxy_endpoints_extension_point)
async def init(proxy):
    proxy.add_proxy_endpoints({"/acme": {"target": "https://api.acme.example/v2", "allowedMethods": ["GET"]}})
```

The mapping has the shape of ``proxy.endpoints`` (a URL string or an options object per route)
and is checked the same way when the proxy starts; on a clash with the config, the config wins
(logged); between calls, the later one wins (logged). ``proxy.skipInvalidProxies`` applies to
these endpoints too. They are kept across config reloads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from kernel.api import ExtensionPoint

__all__ = ["ProvidedEndpoints", "ProxyEndpointsExtension", "proxy_endpoints_extension_point"]


class ProxyEndpointsExtension(Protocol):
    """What a module gets from ``proxy.endpoints``."""

    def add_proxy_endpoints(self, endpoints: Mapping[str, Any]) -> None:
        """Add endpoints by route, as ``proxy.endpoints`` writes them (the config wins on a clash)."""
        ...


proxy_endpoints_extension_point: ExtensionPoint[ProxyEndpointsExtension] = ExtensionPoint("proxy.endpoints")


class ProvidedEndpoints:
    """The plugin's implementation: what the modules added, in the order they added it."""

    def __init__(self) -> None:
        self._added: list[dict[str, Any]] = []

    def add_proxy_endpoints(self, endpoints: Mapping[str, Any]) -> None:
        if not isinstance(endpoints, Mapping):
            raise TypeError(f"add_proxy_endpoints takes a mapping of route to endpoint, got {type(endpoints).__name__}")
        self._added.append(dict(endpoints))

    def take(self) -> list[dict[str, Any]]:
        """What was added since the last call (the plugin takes it once, when it starts)."""
        taken, self._added = self._added, []
        return taken

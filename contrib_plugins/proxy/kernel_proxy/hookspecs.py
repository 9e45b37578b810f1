"""The proxy's hook, for packages that add endpoints in code rather than in the config.

A package implements it with ``kernel.api.hookimpl`` in a module listed under the
``kernel.plugins`` entry point group (the reference system's ``proxyEndpointsExtensionPoint``):

```python
# acme_proxy.py, entry point:  acme-proxy = "acme_proxy"
from kernel.api import hookimpl

@hookimpl
def kernel_proxy_endpoints():
    return {"/acme": {"target": "https://api.acme.example/v2", "allowedMethods": ["GET"]}}
```

The proxy calls it once, when its worker starts. The mapping has the shape of
``proxy.endpoints`` (a URL string or an options object per route) and is checked the same way;
on a clash with the config, the config wins (logged); between packages, the one loaded later
wins. ``proxy.skipInvalidProxies`` applies to these endpoints too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pluggy

__all__ = ["kernel_proxy_endpoints"]

hookspec = pluggy.HookspecMarker("kernel")


@hookspec
def kernel_proxy_endpoints() -> Mapping[str, Any]:
    """Proxy endpoints this package adds, by route, as ``proxy.endpoints`` writes them (the config wins on a clash)."""
    raise NotImplementedError

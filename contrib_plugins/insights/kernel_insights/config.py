"""The ``insights`` config key and the service id rule.

```yaml
insights:
  externalApiUrl: ${INSIGHTS_API_URL}   # the internal API; GET <externalApiUrl>/v1/services/<id>
  timeoutSeconds: 10                    # the whole upstream call (connect + answer), else 503
```

Two schemas check it. ``InsightsConfig`` is the plugin's ``config_schema``: the values
(``kernel config check`` and every worker at start-up). ``InsightsBlock`` is declared through the
``kernel_config_schemas`` hook (``kernel_insights.hooks``), which ``kernel config check`` applies
only when an ``insights:`` block exists: there ``externalApiUrl`` is required (an unset
``${INSIGHTS_API_URL}`` leaves ``insights: {}``). A kernel without the block still starts: the
plugin is installed everywhere, and answers 503 until it is configured.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final

import msgspec

__all__ = ["SERVICE_ID", "InsightsBlock", "InsightsConfig", "valid_service_id"]

#: an absolute http(s) URL without credentials, query or fragment
Url = Annotated[str, msgspec.Meta(pattern=r"^https?://[^\s/?#@]+(/[^\s?#]*)?$")]

#: the seed's rule (``/^[a-z0-9-]+$/``), bounded: starts with a letter or digit, at most 63 characters
SERVICE_ID: Final = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class InsightsConfig(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    """``insights``: where the internal API is, and how long to wait for it."""

    #: base URL of the internal API; UNSET (no ``insights`` block): the plugin answers 503
    external_api_url: Url | msgspec.UnsetType = msgspec.UNSET
    #: seconds for one upstream call, connect to last byte
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=300)] = 10.0


class InsightsBlock(msgspec.Struct, rename="camel"):
    """An ``insights:`` block present must name ``externalApiUrl`` (its value is ``InsightsConfig``'s to check)."""

    external_api_url: Any


def valid_service_id(value: str) -> bool:
    return SERVICE_ID.fullmatch(value) is not None

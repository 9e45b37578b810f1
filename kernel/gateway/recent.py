"""The last answers of this gateway that were server errors (status 500 and above), for the dashboard.

The access-log layer notes them; each gateway process keeps its own last ``SIZE``.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

SIZE = 50
_errors: deque[dict[str, Any]] = deque(maxlen=SIZE)


def note(method: str, path: str, status: int, plugin_id: str, request_id: str) -> None:
    _errors.append(
        {
            "at": time.time(),
            "method": method,
            "path": path,
            "status": status,
            "plugin_id": plugin_id,
            "request_id": request_id,
        }
    )


def recent() -> list[dict[str, Any]]:
    """The errors noted, newest first."""
    return list(reversed(_errors))

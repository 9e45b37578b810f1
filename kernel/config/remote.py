"""Config from a URL (``--config https://...``, the reference system's ``RemoteConfigSource``).

``is_url`` tells a URL from a file path; ``fetch_text`` reads one with the standard library's HTTP
client, bounded in time and size, and names the URL and the cause when it cannot (a ``ConfigError``).
The text is parsed as a file's would be (JSON when the path ends in ``.json``, else YAML) and takes
``${VAR}`` and ``$env``; ``$file`` and ``$include`` have no file to be relative to and are refused.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import PurePosixPath
from typing import Final
from urllib.parse import urlsplit

from kernel.errors import ConfigError

__all__ = ["FETCH_TIMEOUT", "MAX_BYTES", "fetch_text", "is_url", "suffix_of"]

FETCH_TIMEOUT: Final = 10.0
MAX_BYTES: Final = 10 * 1024 * 1024


def is_url(location: str) -> bool:
    return location.startswith(("http://", "https://"))


def suffix_of(url: str) -> str:
    """The URL path's suffix (``.json``, ``.yaml``), for choosing the parser."""
    return PurePosixPath(urlsplit(url).path).suffix


def fetch_text(url: str, timeout: float = FETCH_TIMEOUT) -> str:
    """The text at ``url``; ``ConfigError`` naming the URL when it cannot be read (down, an error status, too big)."""
    request = urllib.request.Request(url, headers={"Accept": "application/yaml, application/json, text/plain"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # http(s) only: is_url
            body: bytes = answer.read(MAX_BYTES + 1)
            charset = answer.headers.get_content_charset() or "utf-8"
    except urllib.error.HTTPError as exc:
        raise ConfigError(f"Unable to read config from '{url}': it answered HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConfigError(f"Unable to read config from '{url}': {reason}") from None
    if len(body) > MAX_BYTES:
        raise ConfigError(f"Unable to read config from '{url}': it is over {MAX_BYTES} bytes")
    try:
        return body.decode(charset)
    except (UnicodeDecodeError, LookupError):
        raise ConfigError(f"Unable to read config from '{url}': it is not {charset} text") from None

"""Asking a running kernel over HTTP with an operator's token: what ``kernel status`` and ``kernel rollout`` share.

One JSON request (``GET``, or ``POST`` with a JSON body) to the kernel's operator endpoints. A refusal
or an unreachable kernel is an ``OperatorCallError`` whose message the command prints as it is; its
``status`` is the HTTP status (0: no answer).
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from typing import Any

#: seconds one request may take
TIMEOUT = 10.0


class OperatorCallError(Exception):
    """Why the kernel gave no answer to use: ``status`` is its HTTP status (0: it could not be reached)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def call(
    url: str, path: str, token: str, body: dict[str, Any] | None = None, *, insecure: bool = False
) -> dict[str, Any]:
    """``GET`` ``path`` of the kernel at ``url`` (``POST`` when given a ``body``) with ``token``; the JSON answer."""
    url = url.rstrip("/")
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url + path, data=data, headers={"Accept": "application/json"})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    context = ssl._create_unverified_context() if insecure else None  # --insecure: a development kernel
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT, context=context) as resp:
            answer: dict[str, Any] = json.loads(resp.read())
            return answer
    except urllib.error.HTTPError as exc:
        raise OperatorCallError(_refused(url, exc, token), exc.code) from None
    except (OSError, ValueError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise OperatorCallError(
            f"cannot reach the kernel at {url} ({reason}): is it running? (--url, or --config)"
        ) from None


def _refused(url: str, exc: urllib.error.HTTPError, token: str) -> str:
    try:
        message = json.loads(exc.read())["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = exc.reason
    if exc.code == 401:
        given = "no token given (--token or $KERNEL_TOKEN)" if not token else "the token was refused"
        return f"{url} answered 401: {given}: {message}"
    return f"{url} answered {exc.code}: {message}"

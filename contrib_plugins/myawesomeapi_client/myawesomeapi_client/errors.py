"""HTTP answers that are not a success, as the kernel's errors (``kernel.api``).

The kernel's own error shape (``{"error": {"name", "message"}, "request", "response"}``, what the
gateway and the proxy plugin answer for their own failures) is read first: a known ``name``
decides the error class and its ``message`` is kept. Otherwise the status decides:

=====================  ==========================================================
400 and other 4xx      ``InputError`` (the request was wrong)
401                    ``AuthenticationError`` (no token, or not a valid one)
403                    ``NotAllowedError``
404                    ``NotFoundError``
409                    ``ConflictError``
501                    ``NotImplementedError``
502                    ``BadGatewayError`` (the proxy could not reach the API, or it answered nonsense)
504                    ``GatewayTimeoutError``
429, other 5xx, 3xx    ``ServiceUnavailableError`` (the API failed; redirects are not followed)
=====================  ==========================================================

Every error raised carries a ``ResponseError`` as its ``cause``: method, URL, status and the first
bytes of the body, for logs and for callers that need more than the class.
"""

from __future__ import annotations

import json
from typing import Final

from kernel.api import (
    AuthenticationError,
    BadGatewayError,
    ConflictError,
    GatewayTimeoutError,
    InputError,
    KernelError,
    NotAllowedError,
    NotFoundError,
    NotImplementedError,
    NotModifiedError,
    ServiceUnavailableError,
)

__all__ = ["BODY_PREVIEW", "ResponseError", "error_from_response"]

#: bytes of a body kept in a ``ResponseError`` (and read for a message)
BODY_PREVIEW: Final = 4096
#: characters of an upstream message kept in an error's message
MESSAGE_LIMIT: Final = 200

_BY_NAME: Final[dict[str, type[KernelError]]] = {
    cls.name: cls
    for cls in (
        InputError,
        AuthenticationError,
        NotAllowedError,
        NotFoundError,
        ConflictError,
        NotModifiedError,
        NotImplementedError,
        ServiceUnavailableError,
        BadGatewayError,
        GatewayTimeoutError,
    )
}
_BY_STATUS: Final[dict[int, type[KernelError]]] = {
    400: InputError,
    401: AuthenticationError,
    403: NotAllowedError,
    404: NotFoundError,
    409: ConflictError,
    429: ServiceUnavailableError,
    501: NotImplementedError,
    502: BadGatewayError,
    504: GatewayTimeoutError,
}


class ResponseError(Exception):
    """An answer that was not a success: the ``cause`` of the kernel error the client raises."""

    def __init__(self, method: str, url: str, status: int, body: bytes) -> None:
        super().__init__(f"{method} {url}: HTTP {status}")
        self.method = method
        self.url = url
        self.status = status
        self.body = body[:BODY_PREVIEW]


def error_from_response(method: str, url: str, path: str, status: int, body: bytes) -> KernelError:
    """The kernel error for ``status`` and ``body``; its message names the API, method and path."""
    name, message = _read_body(body)
    cls = _BY_NAME.get(name or "") or _BY_STATUS.get(status)
    if cls is None:
        cls = InputError if 400 <= status < 500 else ServiceUnavailableError
    detail = f"HTTP {status}" + (f": {message[:MESSAGE_LIMIT]}" if message else "")
    return cls(f"MyAwesomeApi {method} {path} failed, {detail}", cause=ResponseError(method, url, status, body))


def _read_body(body: bytes) -> tuple[str | None, str | None]:
    """``(error name, message)`` from the kernel's error shape, or ``(None, message)`` from ``{"message": ...}``."""
    try:
        data = json.loads(body[:BODY_PREVIEW])
    except ValueError:
        return None, None
    if not isinstance(data, dict):
        return None, None
    error = data.get("error")
    if isinstance(error, dict):
        name, message = error.get("name"), error.get("message")
        return (name if isinstance(name, str) else None), (message if isinstance(message, str) else None)
    message = data.get("message")
    return None, (message if isinstance(message, str) else None)

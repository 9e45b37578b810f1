"""The few errors of the kernel, and the one place that maps their names to HTTP status codes."""

from __future__ import annotations

import math
import traceback
from typing import Any

__all__ = [
    "AuthenticationError",
    "BadGatewayError",
    "BootError",
    "ConfigError",
    "ConflictError",
    "DependencyError",
    "GatewayTimeoutError",
    "InputError",
    "KernelError",
    "NotAllowedError",
    "NotFoundError",
    "NotImplementedError_",
    "NotModifiedError",
    "PayloadTooLargeError",
    "PluginDeclarationError",
    "ProtocolError",
    "RequestHeaderFieldsTooLargeError",
    "RequestTimeoutError",
    "ServiceUnavailableError",
    "TooManyRequestsError",
    "UriTooLongError",
    "describe",
    "error_body",
    "name_for_status",
    "retry_after_header",
    "status_for",
]

# The name -> status map of ARCHITECTURE.md; anything not listed is a 500.
STATUS_BY_NAME: dict[str, int] = {
    "InputError": 400,
    "AuthenticationError": 401,
    "NotAllowedError": 403,
    "NotFoundError": 404,
    "ConflictError": 409,
    "NotModifiedError": 304,
    "NotImplementedError": 501,
    "BadGatewayError": 502,
    "ServiceUnavailableError": 503,
    "GatewayTimeoutError": 504,
    "RequestTimeoutError": 408,
    "PayloadTooLargeError": 413,
    "UriTooLongError": 414,
    "TooManyRequestsError": 429,
    "RequestHeaderFieldsTooLargeError": 431,
}

_NAME_BY_STATUS = {status: name for name, status in STATUS_BY_NAME.items()} | {405: "MethodNotAllowedError"}


class KernelError(Exception):
    """Base of every error the kernel or a plugin raises on purpose; ``name`` decides the HTTP status.

    The kernel's own failures (``ConfigError``, ``ProtocolError``, ``PluginDeclarationError``,
    ``DependencyError``, ``BootError``) and the HTTP errors below all derive from it.
    """

    name = "Error"

    def __init__(self, message: str, *, cause: BaseException | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.cause = cause
        #: seconds after which the caller may try again: the gateway sends it as ``Retry-After`` (429, 503)
        self.retry_after = retry_after


# ---------------------------------------------------------------------------- the kernel's own failures


class ConfigError(KernelError):
    """The configuration could not be loaded or read; the message names the key and its file."""

    name = "ConfigError"


class ProtocolError(KernelError):
    """A frame could not be decoded, or the peer speaks another protocol version."""

    name = "ProtocolError"


class PluginDeclarationError(KernelError):
    """A plugin was declared wrongly; raised where it is declared, never on a request."""

    name = "PluginDeclarationError"


class DependencyError(KernelError):
    """A service nobody provides, or a cycle among services."""

    name = "DependencyError"


class BootError(KernelError):
    """A plugin could not be started in its worker."""

    name = "BootError"


# ---------------------------------------------------------------------------- errors with an HTTP status


class InputError(KernelError):
    """The request was malformed (400)."""

    name = "InputError"


class AuthenticationError(KernelError):
    """Credentials are missing or invalid (401)."""

    name = "AuthenticationError"


class NotAllowedError(KernelError):
    """The caller may not do this (403)."""

    name = "NotAllowedError"


class NotFoundError(KernelError):
    """The thing asked for does not exist (404)."""

    name = "NotFoundError"


class ConflictError(KernelError):
    """The request conflicts with the current state (409)."""

    name = "ConflictError"


class NotModifiedError(KernelError):
    """The resource has not changed (304)."""

    name = "NotModifiedError"


class NotImplementedError_(KernelError):  # ``kernel.api`` exports it as ``NotImplementedError``
    """Not implemented (501)."""

    name = "NotImplementedError"


class BadGatewayError(KernelError):
    """An upstream the request was passed on to could not be reached or broke off its answer (502)."""

    name = "BadGatewayError"


class ServiceUnavailableError(KernelError):
    """Temporarily unable to serve (503)."""

    name = "ServiceUnavailableError"


class GatewayTimeoutError(KernelError):
    """The plugin did not answer in time (504)."""

    name = "GatewayTimeoutError"


class PayloadTooLargeError(KernelError):
    """The request body is over the limit (413)."""

    name = "PayloadTooLargeError"


class RequestTimeoutError(KernelError):
    """The client did not send its request (head or body) in the time the gateway allows (408)."""

    name = "RequestTimeoutError"


class UriTooLongError(KernelError):
    """A request target (path and query) longer than the gateway takes (414)."""

    name = "UriTooLongError"


class RequestHeaderFieldsTooLargeError(KernelError):
    """A request with more header fields, or a larger head, than the gateway takes (431)."""

    name = "RequestHeaderFieldsTooLargeError"


class TooManyRequestsError(KernelError):
    """The caller sent more requests than the rate limit allows (429); ``retry_after``: seconds until it may again."""

    name = "TooManyRequestsError"


def retry_after_header(exc: BaseException) -> list[tuple[bytes, bytes]]:
    """``Retry-After`` (whole seconds, at least 1) for an error that says when to retry; else nothing."""
    after = getattr(exc, "retry_after", None)
    if not isinstance(after, (int, float)):
        return []
    return [(b"retry-after", str(max(1, math.ceil(after))).encode())]


def describe(exc: BaseException) -> tuple[str, int]:
    """Error name and HTTP status of an exception: a ``KernelError`` by its name, anything else 500."""
    if isinstance(exc, KernelError):
        return exc.name, status_for(exc.name)
    return type(exc).__name__, 500


def name_for_status(status: int) -> str:
    """The error name for a bare HTTP status (a framework's HTTPException)."""
    return _NAME_BY_STATUS.get(status, "HttpError")


def status_for(name: str) -> int:
    """HTTP status for an error name; unknown names are 500."""
    return STATUS_BY_NAME.get(name, 500)


def error_body(
    name: str,
    message: str,
    method: str,
    url: str,
    *,
    status: int | None = None,
    stack: str | None = None,
) -> dict[str, Any]:
    """The documented error JSON shape."""
    error: dict[str, Any] = {"name": name, "message": message}
    if stack:
        error["stack"] = stack
    return {
        "error": error,
        "request": {"method": method, "url": url},
        "response": {"statusCode": status if status is not None else status_for(name)},
    }


def format_stack(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))

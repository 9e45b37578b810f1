"""A framework's ``HTTPException`` (Starlette's: a route's 405, a handler's ``raise HTTPException(...)``)
as the error shape sees it, in the worker and the gateway alike: its name, status, message and the
headers it carries (``Allow`` of a 405, its methods in a stable order)."""

from __future__ import annotations

from starlette.exceptions import HTTPException

from kernel import errors


def describe(exc: BaseException) -> tuple[str, int, str]:
    """Name, status and message of ``exc``: an ``HTTPException`` by its status, else as ``errors.describe``."""
    if isinstance(exc, HTTPException):
        name = errors.name_for_status(exc.status_code)
        return name, exc.status_code, exc.detail or name
    name, status = errors.describe(exc)
    return name, status, str(exc) or name


def own_headers(exc: BaseException) -> list[tuple[bytes, bytes]]:
    """The headers an ``HTTPException`` carries, beside the error shape's own."""
    if not isinstance(exc, HTTPException) or not exc.headers:
        return []
    kept = [(k.lower(), v) for k, v in exc.headers.items() if k.lower() not in ("content-type", "content-length")]
    # Starlette joins a route's methods from a set, whose order changes with each process's hash seed:
    # the same 405 from every gateway and worker
    kept = [(k, ", ".join(sorted(v.split(", "))) if k == "allow" else v) for k, v in kept]
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in kept]

"""The proxy's OpenAPI document (``/api/proxy/openapi.json``), built from the endpoints in force.

Each endpoint ``/<route>`` is two paths, ``/<route>`` and ``/<route>/{path}`` (the rest of the path,
passed on), with its allowed methods (all eight an OpenAPI path item names when it does not limit
them, as the reference system's proxy passes any method on). What the
upstream answers is its own (any status, any body); the answers the proxy itself makes are the
kernel's errors: 404 (no such endpoint), 405 (a method the endpoint does not allow), 502 (the upstream
broke off or could not be reached), 503 (too many requests at once to the endpoint), 504 (the upstream
did not answer in time). The document is set again after each config reload (``router.set_openapi``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kernel.api import OpenApi

from .config import Endpoint

__all__ = ["document"]

#: the methods documented for an endpoint that allows every method: every one an OpenAPI path item can
#: name, as the reference's proxy passes on any method unless ``allowedMethods`` limits them
METHODS = ("GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE")
_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/KernelError"}}}
_PROXY_ERRORS = {
    "405": "The endpoint does not allow this method",
    "502": "The upstream could not be reached or broke off its answer",
    "503": "Too many requests to this endpoint at once",
    "504": "The upstream did not answer in time",
}
_BODY = {
    "required": False,
    "content": {
        "application/json": {"schema": {}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    },
}


def _operation(prefix: str, method: str, rest: bool) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": f"{method} passed on to the upstream of {prefix}",
        "tags": [prefix],
        "responses": {
            **{status: {"description": why, "content": _ERROR} for status, why in _PROXY_ERRORS.items()},
            "default": {"description": "The upstream's answer, as it sent it"},
        },
    }
    if rest:
        op["parameters"] = [
            {
                "name": "path",
                "in": "path",
                "required": True,
                "description": "the rest of the path, passed on",
                "schema": {"type": "string", "pattern": "^[^/]+$"},
            }
        ]
    if method in ("POST", "PUT", "PATCH"):
        op["requestBody"] = _BODY
    return op


def document(endpoints: Mapping[str, Endpoint]) -> OpenApi:
    """The document of ``endpoints`` (prefix -> endpoint)."""
    paths: dict[str, Any] = {}
    for prefix, endpoint in sorted(endpoints.items()):
        methods = [m for m in METHODS if endpoint.allowed_methods is None or m in endpoint.allowed_methods]
        base = prefix.rstrip("/")
        paths[base or "/"] = {m.lower(): _operation(prefix, m, rest=False) for m in methods}
        paths[f"{base}/{{path}}"] = {m.lower(): _operation(prefix, m, rest=True) for m in methods}
    return OpenApi(
        title="proxy",
        description="Configured upstreams behind the kernel's credentials (proxy.endpoints)",
        document={"openapi": "3.1.0", "info": {"title": "proxy", "version": "1.0.0"}, "paths": paths},
    )

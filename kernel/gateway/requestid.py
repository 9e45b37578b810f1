"""``X-Request-Id``: the client's (when valid) or a new one, for the worker, the logs and the answer.

A valid id (``kernel.logs.valid_request_id``: 1 to 200 of ``A-Za-z0-9._:+/=@-``) is kept, anything
else is replaced by a new one (32 random hex digits). The request goes on with exactly one ``x-request-id`` header (so
the worker's task logs under it), ``scope["kernel.request_id"]`` and ``kernel.logs.REQUEST_ID``
hold it in the gateway, and the answer carries it back (unless the plugin set its own). The
``ObserveMiddleware`` (``kernel.gateway.middleware.observe``) applies it.
"""

from __future__ import annotations

import os

from starlette.types import Scope

from kernel.logs import valid_request_id
from kernel.scope_keys import REQUEST_ID

HEADER = b"x-request-id"


def assign(scope: Scope) -> str:
    """The request's id: the client's if valid, else a new one put in the headers in its place."""
    headers = scope["headers"]
    given = False
    for name, value in headers:
        if name == HEADER:
            rid = valid_request_id(value)
            if rid is not None:
                scope[REQUEST_ID] = rid
                return rid
            given = True
            break
    rid = os.urandom(16).hex()  # 128 random bits, as a W3C trace id: 32 hex digits
    kept = [h for h in headers if h[0] != HEADER] if given else headers
    scope["headers"] = [*kept, (HEADER, rid.encode())]
    scope[REQUEST_ID] = rid
    return rid

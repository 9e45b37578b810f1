"""The ``httpAuth`` service: the credentials of an incoming request, checked against what a route allows.

The gateway verified the caller before the request reached the plugin (``principal_of``);
this service adds the token it came with, so the plugin can act on the caller's behalf,
and refuses principal types a route does not take (403; a missing caller is 401). A
plugin token sent on a user's behalf carries the user's limited token (``obo``): the
credentials keep that one, so the user can be carried on to the next plugin.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from kernel.api import (
    USER_COOKIE,
    Auth,
    AuthenticationError,
    Credentials,
    HttpRouter,
    NotAllowedError,
    Operation,
    PrincipalType,
    presented_token,
    principal_of,
)
from kernel_services.auth.tokens import LIMITED_USER_TYP, PLUGIN_TYP, expiry_of, parts_of

COOKIE_PATH = "/.backstage/auth/v1/cookie"


class CookieIssued(msgspec.Struct, rename="camel"):
    """The cookie was set; it expires with the user's token (ISO 8601)."""

    expires_at: str


COOKIE_OPERATIONS = {
    "GET": Operation(
        summary="Set the user cookie (a limited user token), for requests that cannot send a header",
        tags=["auth"],
        response=CookieIssued,
        errors={401: "No user token or cookie", 403: "Not a user's credentials"},
    ),
    "DELETE": Operation(summary="Remove the user cookie", tags=["auth"], status=204),
}


class DefaultHttpAuth:
    """A ``kernel.api.HttpAuth`` of the plugin whose external base URL is ``base_url``."""

    def __init__(self, auth: Auth, base_url: Callable[[], Awaitable[str]]) -> None:
        self._auth = auth
        self._base_url = base_url

    async def credentials(
        self, request: Any, *, allow: Sequence[PrincipalType] | None = None, allow_limited_access: bool = False
    ) -> Credentials:
        principal = principal_of(request)
        token = presented_token(request.scope["headers"], allow_limited_access) or ""
        parts = parts_of(token) if token else None
        typ = parts[0].get("typ") if parts else None
        if typ == LIMITED_USER_TYP and not allow_limited_access:
            raise AuthenticationError("A limited user token is not accepted here")
        if typ == PLUGIN_TYP and parts is not None and isinstance(parts[1].get("obo"), str):
            token = parts[1]["obo"]  # the user this plugin acts for
        credentials = Credentials(principal, expiry_of(token) if token else None, token)
        if allow is None or principal.type in allow:
            return credentials
        if principal.type == "none":
            raise AuthenticationError("Missing credentials")
        allowed = ", ".join(allow)
        raise NotAllowedError(f"This route accepts {allowed} credentials, not {principal.type} credentials")

    async def issue_user_cookie(self, response: Any, *, credentials: Credentials | None = None) -> float:
        """Set the limited-token cookie (``USER_COOKIE``) on a Starlette ``response``, for this plugin's paths.

        ``credentials`` must be a user's, with their token (``credentials(request, allow=["user"])``).
        """
        if credentials is None or credentials.principal.type != "user":
            raise AuthenticationError("A user cookie needs user credentials")
        token, expires_at = await self._auth.get_limited_user_token(credentials)
        base = urlsplit(await self._base_url())
        response.set_cookie(
            USER_COOKIE,
            token,
            expires=int(expires_at),
            path=base.path or "/",
            secure=base.scheme == "https",
            httponly=True,
            samesite="none" if base.scheme == "https" else "lax",
        )
        return expires_at

    def serve_cookie(self, router: HttpRouter) -> None:
        """``GET`` issues the cookie (a user token, or the cookie itself to refresh it); ``DELETE`` removes it."""

        async def cookie(request: Request) -> Response:
            if request.method == "DELETE":
                base = urlsplit(await self._base_url())
                removed = Response(status_code=204)
                removed.delete_cookie(USER_COOKIE, path=base.path or "/")
                return removed
            credentials = await self.credentials(request, allow=["user"], allow_limited_access=True)
            answer = JSONResponse({"expiresAt": _iso(credentials.expires_at or 0)})  # the cookie lives as long
            await self.issue_user_cookie(answer, credentials=credentials)
            return answer

        for method, operation in COOKIE_OPERATIONS.items():
            router.add_route(COOKIE_PATH, cookie, methods=[method], openapi=operation)
        router.add_auth_policy(COOKIE_PATH, allow="user-cookie")


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")

"""The plugin's HTTP routes, relative to its mount (``/api/auth``); all of them open (no credentials).

* ``GET /.well-known/openid-configuration``, ``GET /.well-known/jwks.json``: discovery and keys;
* ``GET|POST /guest/refresh``: a token for the guest user (development only, as in Backstage);
* ``POST /oidc-token/exchange`` ``{"token": <ID token>}``: a token for the user an external ID token names;
* ``GET /v1/userinfo`` with ``Authorization: Bearer <user token>``: its ``sub`` and ``ent``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import jwt
from starlette.requests import Request
from starlette.responses import JSONResponse

from kernel.api import (
    AuthenticationError,
    HttpRouter,
    InputError,
    Logger,
    NotAllowedError,
    NotFoundError,
)

from .config import AuthConfig
from .issuer import UserTokenIssuer
from .keys import SigningKeys
from .oidc_token import OidcTokenVerifier
from .openapi import OPERATIONS
from .tokens import ALGORITHM, USER_AUDIENCE, USER_TYP, unverified_parts

__all__ = ["GUEST_REFUSED", "AuthRoutes"]

GUEST_REFUSED = (
    "The guest provider cannot be used outside of a development environment unless "
    "'auth.providers.guest.dangerouslyAllowOutsideDevelopment' is enabled "
    "(development: KERNEL_ENV=development, which `kernel serve --dev` sets)"
)


class AuthRoutes:
    def __init__(
        self,
        issuer: UserTokenIssuer,
        keys: SigningKeys,
        settings: Callable[[], AuthConfig],
        logger: Logger,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        self._issuer = issuer
        self._keys = keys
        self._settings = settings
        self._logger = logger
        self._environ = environ
        self._oidc: OidcTokenVerifier | None = None

    def register(self, router: HttpRouter) -> None:
        endpoints = {
            "/.well-known/openid-configuration": self.openid_configuration,
            "/.well-known/jwks.json": self.jwks,
            "/guest/refresh": self.guest_refresh,
            "/oidc-token/exchange": self.oidc_token_exchange,
            "/v1/userinfo": self.userinfo,
        }
        for (path, method), operation in OPERATIONS.items():  # one route per method: each documented
            router.add_route(path, endpoints[path], methods=[method], openapi=operation)
        for path in ("/.well-known", "/guest", "/oidc-token", "/v1/userinfo"):
            router.add_auth_policy(path, allow="unauthenticated")

    # ------------------------------------------------------------------ discovery

    async def openid_configuration(self, request: Request) -> JSONResponse:
        base = await self._issuer.issuer()
        return JSONResponse(
            {
                "issuer": base,
                "userinfo_endpoint": f"{base}/v1/userinfo",
                "jwks_uri": f"{base}/.well-known/jwks.json",
                "response_types_supported": ["id_token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": [ALGORITHM],
                "scopes_supported": ["openid"],
                "token_endpoint_auth_methods_supported": [],
                "claims_supported": ["sub", "ent"],
                "grant_types_supported": [],
            }
        )

    async def jwks(self, request: Request) -> JSONResponse:
        return JSONResponse({"keys": await self._keys.public_keys()})

    # ------------------------------------------------------------------ providers

    async def guest_refresh(self, request: Request) -> JSONResponse:
        guest = self._settings().providers.guest
        if self._environ.get("KERNEL_ENV") != "development" and not guest.dangerously_allow_outside_development:
            raise NotAllowedError(GUEST_REFUSED)
        identity = await self._issuer.issue(
            guest.user_entity_ref,
            guest.ownership_entity_refs if guest.ownership_entity_refs is not None else [guest.user_entity_ref],
        )
        return JSONResponse({"profile": {}, "providerInfo": {}, "backstageIdentity": identity})

    def _oidc_verifier(self) -> OidcTokenVerifier:
        provider = self._settings().providers.oidc_token
        if provider is None:
            raise NotFoundError("The auth provider 'oidc-token' is not configured (auth.providers.oidcToken)")
        if self._oidc is None or self._oidc.provider != provider:  # first use, or the config changed
            self._oidc = OidcTokenVerifier(provider, self._logger)
        return self._oidc

    async def oidc_token_exchange(self, request: Request) -> JSONResponse:
        verifier = self._oidc_verifier()
        try:
            body: Any = await request.json()
        except ValueError:
            raise InputError('Expected a JSON body {"token": "<ID token>"}') from None
        token = body.get("token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise InputError('Expected a JSON body {"token": "<ID token>"}')
        external = await verifier.exchange(token)
        identity = await self._issuer.issue(external.user_entity_ref, external.ownership_entity_refs)
        return JSONResponse({"profile": external.profile, "providerInfo": {}, "backstageIdentity": identity})

    # ------------------------------------------------------------------ userinfo

    async def userinfo(self, request: Request) -> JSONResponse:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError("No token provided")
        claims = await self.verify_user_token(token.strip())
        return JSONResponse({"sub": claims["sub"], "ent": claims.get("ent", [])})

    async def verify_user_token(self, token: str) -> dict[str, Any]:
        """The claims of a full user token this plugin (any replica) issued; ``AuthenticationError`` otherwise."""
        try:
            header, _ = unverified_parts(token)
        except ValueError as exc:
            raise AuthenticationError(f"Invalid token: {exc}") from None
        if header.get("typ") != USER_TYP:
            raise AuthenticationError("Not a Backstage user token")
        jwk = next((k for k in await self._keys.public_keys() if k.get("kid") == header.get("kid")), None)
        if jwk is None:
            raise AuthenticationError("The token's signing key is not published")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                jwt.PyJWK(jwk).key,
                algorithms=[ALGORITHM],
                audience=USER_AUDIENCE,
                issuer=await self._issuer.issuer(),
                options={"require": ["iss", "sub", "aud", "exp", "iat"]},
            )
        except jwt.PyJWTError as exc:
            raise AuthenticationError(f"Invalid token: {exc}") from None
        return claims

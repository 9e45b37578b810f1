"""The ``auth`` service of a plugin: verify tokens, issue plugin tokens, publish its keys (Backstage's AuthService).

Built at every plugin's boot (``eager``): it serves the plugin's public keys at
``/.backstage/auth/v1/jwks.json``, open to anyone, so other plugins and other backends
(a Backstage backend among them) can verify the tokens this plugin issues.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse

from kernel.api import (
    NO_PRINCIPAL,
    AuthenticationError,
    Credentials,
    CredentialVerifier,
    HttpRouter,
    InputError,
    Operation,
    Principal,
    PrincipalType,
    verify_token,
)
from kernel_services.auth.keys import PluginKeys, StaticPluginKeys
from kernel_services.auth.tokens import ALGORITHM, PLUGIN_TYP, limited_token_of
from kernel_services.auth.verifiers import PLUGIN_JWKS_PATH


class PublicKey(msgspec.Struct):
    """One public key (a JWK) of the plugin's: ES256 on P-256."""

    kty: str
    kid: str
    crv: str = "P-256"
    x: str = ""
    y: str = ""
    alg: str = ALGORITHM
    use: str = "sig"


class PublicKeys(msgspec.Struct):
    """The keys other plugins verify this plugin's tokens with (a JWKS)."""

    keys: list[PublicKey]


JWKS_OPERATION = Operation(
    summary="The plugin's public keys (JWKS), to verify the tokens it issues", tags=["auth"], response=PublicKeys
)


class DefaultAuth:
    """A ``kernel.api.Auth`` for plugin ``plugin_id``."""

    def __init__(
        self, plugin_id: str, keys: PluginKeys | StaticPluginKeys, verifiers: Sequence[CredentialVerifier]
    ) -> None:
        self.plugin_id = plugin_id
        self._keys = keys
        self._verifiers = list(verifiers)

    async def authenticate(self, token: str, *, allow_limited_access: bool = False) -> Credentials:
        verified = await verify_token(self._verifiers, token)
        if verified is None:
            raise AuthenticationError("Invalid credentials")
        if verified.audience is not None and verified.audience != self.plugin_id:
            raise AuthenticationError(f"This token is for plugin '{verified.audience}', not '{self.plugin_id}'")
        if verified.limited and not allow_limited_access:
            raise AuthenticationError("A limited user token is not accepted here")
        return Credentials(verified.principal, verified.expires_at, token)

    def is_principal(self, credentials: Credentials, type: PrincipalType) -> bool:
        return type == "unknown" or credentials.principal.type == type

    async def get_none_credentials(self) -> Credentials:
        return Credentials(NO_PRINCIPAL)

    async def get_own_service_credentials(self) -> Credentials:
        return Credentials(Principal("service", f"plugin:{self.plugin_id}"))

    async def get_plugin_request_token(self, *, on_behalf_of: Credentials, target_plugin_id: str) -> str:
        principal = on_behalf_of.principal
        now = int(time.time())
        claims: dict[str, Any] = {"sub": self.plugin_id, "aud": target_plugin_id, "iat": now}
        exp = now + int(self._keys.key_seconds)  # a token never outlives the key that signed it
        if principal.type == "user":
            if not on_behalf_of.token:
                raise AuthenticationError("These user credentials carry no token to act on the user's behalf")
            limited, user_exp = await self.get_limited_user_token(on_behalf_of)
            claims["obo"] = limited
            exp = min(exp, int(user_exp))
        elif principal.type != "service":
            raise AuthenticationError("A plugin token needs service or user credentials, not none")
        claims["exp"] = exp
        return await self._sign(claims)

    async def _sign(self, claims: dict[str, Any]) -> str:
        import jwt

        key = await self._keys.signing_key()
        headers = {"typ": PLUGIN_TYP, "kid": key.kid}
        return jwt.encode(claims, key.private, algorithm=ALGORITHM, headers=headers)

    async def get_limited_user_token(self, credentials: Credentials) -> tuple[str, float]:
        if credentials.principal.type != "user" or not credentials.token:
            raise InputError("A limited user token needs user credentials with their token")
        try:
            return limited_token_of(credentials.token)
        except ValueError as exc:
            raise AuthenticationError(f"Cannot make a limited token: {exc}") from None

    async def list_public_service_keys(self) -> list[dict[str, Any]]:
        return await self._keys.public_keys()

    def serve_keys(self, router: HttpRouter) -> None:
        """Publish the plugin's public keys on its router, open to anyone."""

        async def jwks(request: Request) -> JSONResponse:
            return JSONResponse({"keys": await self.list_public_service_keys()})

        router.add_route(PLUGIN_JWKS_PATH, jwks, methods=["GET"], openapi=JWKS_OPERATION)
        router.add_auth_policy(PLUGIN_JWKS_PATH, allow="unauthenticated")

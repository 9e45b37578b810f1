"""The auth plugin's routes in its OpenAPI document (``/api/auth/openapi.json``): their types and operations."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from kernel.api import OpenApi, Operation

__all__ = ["DOCUMENT", "OPERATIONS"]

DOCUMENT = OpenApi(title="auth", description="User tokens: the guest provider, OIDC token exchange, keys, userinfo")


class OpenIdConfiguration(msgspec.Struct):
    """OpenID Connect discovery of the plugin as an issuer."""

    issuer: str
    userinfo_endpoint: str
    jwks_uri: str
    response_types_supported: list[str]
    subject_types_supported: list[str]
    id_token_signing_alg_values_supported: list[str]
    scopes_supported: list[str]
    token_endpoint_auth_methods_supported: list[str]
    claims_supported: list[str]
    grant_types_supported: list[str]


class Jwk(msgspec.Struct):
    kty: str
    kid: str
    alg: str = "ES256"


class Jwks(msgspec.Struct):
    """The public keys of the user tokens the plugin issues."""

    keys: list[Jwk]


class Identity(msgspec.Struct, rename="camel"):
    type: Literal["user"]
    user_entity_ref: str
    ownership_entity_refs: list[str]


class BackstageIdentity(msgspec.Struct, rename="camel"):
    token: str
    expires_in_seconds: int
    identity: Identity


class SignInResult(msgspec.Struct, rename="camel"):
    """A signed-in user, as Backstage's auth providers answer."""

    profile: dict[str, Any]
    provider_info: dict[str, Any]
    backstage_identity: BackstageIdentity


class ExchangeRequest(msgspec.Struct):
    #: an ID token of the configured external issuer
    token: str


class UserInfo(msgspec.Struct):
    sub: str
    ent: list[str]


_GUEST_ERRORS = {403: "The guest provider is off outside development"}
_GUEST = Operation(summary="A token for the guest user", tags=["guest"], response=SignInResult, errors=_GUEST_ERRORS)

#: (path, method) -> its operation
OPERATIONS: dict[tuple[str, str], Operation] = {
    ("/.well-known/openid-configuration", "GET"): Operation(
        summary="OpenID Connect discovery", tags=["discovery"], response=OpenIdConfiguration
    ),
    ("/.well-known/jwks.json", "GET"): Operation(
        summary="The keys of the user tokens the plugin issues", tags=["discovery"], response=Jwks
    ),
    ("/guest/refresh", "GET"): _GUEST,
    ("/guest/refresh", "POST"): _GUEST,
    ("/oidc-token/exchange", "POST"): Operation(
        summary="A user token for the user an external ID token names",
        tags=["oidc-token"],
        body=ExchangeRequest,
        response=SignInResult,
        errors={
            400: "Not a JSON body with a token",
            401: "The ID token is not valid",
            404: "The provider is not configured",
        },
    ),
    ("/v1/userinfo", "GET"): Operation(
        summary="Who a user token is for", tags=["userinfo"], response=UserInfo, errors={401: "No valid user token"}
    ),
}

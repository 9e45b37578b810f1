"""The ``identity`` service: the user of a request, from their user token (Backstage's ``DefaultIdentityClient``).

Deprecated in the reference system in favour of ``httpAuth`` + ``userInfo``; kept for the plugins
that still call it. As the reference system's client:

- no ``Authorization`` header: ``None`` (an anonymous request on an open route);
- a bearer token is verified as a user token: signed by a key of the ``auth`` plugin's JWKS
  (``<auth base URL>/.well-known/jwks.json``, through discovery), ``alg`` among ``algorithms``
  (default ``ES256``), ``aud: backstage``, ``iss`` equal to ``issuer`` when one is set, a ``sub``;
- anything else (a service's or a plugin's token, a limited user token, a forged or expired one)
  raises ``AuthenticationError`` (401): this service knows only users.

``identity_service_factory(issuer=..., algorithms=[...])`` is the reference system's
``identityServiceFactory(options)``: a package overrides the default by returning it from
``kernel_provide_services``, as it overrides any core service.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kernel.api import (
    AuthenticationError,
    BackstageIdentityResponse,
    BackstageUserIdentity,
    Discovery,
    ServiceFactory,
    core_services,
    create_service_factory,
)
from kernel_services.auth.jwks import JwksClient, KeysUnavailable
from kernel_services.auth.tokens import USER_AUDIENCE, parts_of
from kernel_services.auth.verifiers import AUTH_PLUGIN, LEEWAY, USER_JWKS_PATH

__all__ = ["DEFAULT_ALGORITHMS", "DefaultIdentityClient", "identity_service_factory"]

DEFAULT_ALGORITHMS = ("ES256",)


def _authorization(request: Any) -> str | None:
    scope = getattr(request, "scope", request)
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            return str(value.decode("latin-1"))
    return None


class DefaultIdentityClient:
    """A ``kernel.api.IdentityService`` verifying user tokens against the ``auth`` plugin's keys."""

    def __init__(
        self, discovery: Discovery, *, issuer: str | None = None, algorithms: Sequence[str] = DEFAULT_ALGORITHMS
    ) -> None:
        self._issuer = issuer
        self._algorithms = list(algorithms)

        async def url() -> str:
            return await discovery.get_base_url(AUTH_PLUGIN) + USER_JWKS_PATH

        self._keys = JwksClient(url)

    async def get_identity(self, request: Any) -> BackstageIdentityResponse | None:
        header = _authorization(request)
        if header is None:
            return None
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationError("No token specified")  # the reference system's message for this case
        return await self.authenticate(token)

    async def authenticate(self, token: str) -> BackstageIdentityResponse:
        """The user of ``token``; ``AuthenticationError`` if it is not a valid user token."""
        import jwt

        parts = parts_of(token)
        if parts is None:
            raise AuthenticationError("Invalid token: not a user token (JWT)")
        header, _claims = parts
        alg = header.get("alg")
        if alg not in self._algorithms:
            allowed = ", ".join(self._algorithms)
            raise AuthenticationError(f"Invalid token: algorithm {alg!r} is not one of {allowed}")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise AuthenticationError("Invalid token: no key id")
        try:
            key = await self._keys.get_key(kid)
        except KeysUnavailable as exc:
            raise AuthenticationError(f"Cannot verify the token: {exc}") from None
        if key is None:
            raise AuthenticationError("Invalid token: signed by no key of the auth plugin")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=self._algorithms,
                audience=USER_AUDIENCE,
                issuer=self._issuer,
                leeway=LEEWAY,
                options={"require": ["exp"], "verify_iss": self._issuer is not None},
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("Expired user token") from None
        except jwt.PyJWTError as exc:
            raise AuthenticationError(f"Failed user token verification: {exc}") from None
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise AuthenticationError("No user sub found in token")
        ent = claims.get("ent")
        refs = [ref for ref in ent if isinstance(ref, str)] if isinstance(ent, list) else []
        return BackstageIdentityResponse(BackstageUserIdentity(sub, refs), token)


def identity_service_factory(
    *, issuer: str | None = None, algorithms: Sequence[str] = DEFAULT_ALGORITHMS
) -> ServiceFactory:
    """The ``identity`` factory with the reference system's options (``identityServiceFactory({issuer, algorithms})``)."""
    if isinstance(algorithms, str) or not algorithms:
        raise TypeError("identity: 'algorithms' must be a non-empty list of JWS algorithm names, e.g. ['ES256']")
    chosen = tuple(algorithms)

    @create_service_factory(core_services.identity, {"discovery": core_services.discovery})
    def _identity(discovery: Discovery) -> DefaultIdentityClient:
        return DefaultIdentityClient(discovery, issuer=issuer, algorithms=chosen)

    return _identity


FACTORIES: list[ServiceFactory] = [identity_service_factory()]

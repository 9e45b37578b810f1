"""The ``oidc-token`` provider: an ID token of a configured external issuer, verified, mapped to a user.

Verification (PyJWT): the ``iss`` is checked before any key is fetched (a token of another issuer
never makes us call the JWKS URL), then the signature against the issuer's JWKS (``RemoteJwks``),
with an asymmetric algorithm from ``algorithms`` that the key allows, then ``iss``, ``aud``
(required), ``exp``, ``iat`` and ``nbf`` with ``leeway`` seconds of tolerance. Every failure is an
``AuthenticationError`` (401) saying which check failed; an unreachable issuer is a 503.

Mapping: ``userEntityRefTemplate`` with ``{claim}`` placeholders (plus ``{email_local}`` and
``{email_domain}``, the parts of ``email``). Every substituted value must itself be a valid entity
name (no ``:``, ``/``, spaces...), so a claim cannot rewrite the kind or namespace of the ref.
``ownershipClaim`` (a string or a list) adds ownership refs (``team-a`` → ``group:default/team-a``);
values that are not entity refs are skipped. The user's own ref is always among the ownership refs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

import jwt

from kernel.api import AuthenticationError, Logger

from .config import OidcTokenProvider
from .remote_jwks import RemoteJwks
from .tokens import parse_entity_ref, unverified_parts

__all__ = ["ExternalIdentity", "OidcTokenVerifier", "map_claims"]

_PLACEHOLDER: Final = re.compile(r"\{([A-Za-z0-9_]+)\}")
_NAME_RE: Final = re.compile(r"^(?:[a-zA-Z0-9]+[-_.])*[a-zA-Z0-9]+$")


@dataclass(frozen=True)
class ExternalIdentity:
    """Who an external ID token says the caller is, in Backstage terms."""

    user_entity_ref: str
    ownership_entity_refs: list[str]
    profile: dict[str, str]


def _template_values(claims: dict[str, Any]) -> dict[str, str]:
    values = {k: v for k, v in claims.items() if isinstance(v, str)}
    email = values.get("email")
    if email and email.count("@") == 1:
        values["email_local"], values["email_domain"] = email.split("@")
    return values


def map_claims(provider: OidcTokenProvider, claims: dict[str, Any], logger: Logger | None = None) -> ExternalIdentity:
    """The identity verified ``claims`` stand for, per the provider's mapping."""
    values = _template_values(claims)

    def substitute(m: re.Match[str]) -> str:
        name = m.group(1)
        value = values.get(name)
        if value is None:
            raise AuthenticationError(f"the ID token has no string claim '{name}', needed to map it to a user")
        if not _NAME_RE.match(value) or len(value) > 63:
            raise AuthenticationError(f"the ID token's claim '{name}' ({value!r}) cannot be part of an entity ref")
        return value

    try:
        user_ref = parse_entity_ref(_PLACEHOLDER.sub(substitute, provider.user_entity_ref_template))
    except ValueError as exc:
        raise AuthenticationError(f"the ID token does not map to a user entity ref: {exc}") from None
    ownership = [user_ref]
    if provider.ownership_claim:
        raw = claims.get(provider.ownership_claim)
        items = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
        for item in items:
            try:
                ref = parse_entity_ref(item, default_kind="group")
            except ValueError:
                if logger is not None:
                    logger.warning("ownership claim value skipped: not an entity ref", claim=provider.ownership_claim)
                continue
            if ref not in ownership:
                ownership.append(ref)
    profile = {
        key: values[claim]
        for key, claim in (("email", "email"), ("displayName", "name"), ("picture", "picture"))
        if claim in values
    }
    return ExternalIdentity(user_ref, ownership, profile)


class OidcTokenVerifier:
    """Verifies ID tokens of one configured issuer (one instance per configuration)."""

    def __init__(self, provider: OidcTokenProvider, logger: Logger, jwks: RemoteJwks | None = None) -> None:
        self.provider = provider
        self._logger = logger
        self._jwks = jwks or RemoteJwks(provider.jwks_url)

    async def verify(self, token: str) -> dict[str, Any]:
        """The claims of a valid ID token of the issuer; ``AuthenticationError`` otherwise."""
        p = self.provider
        try:
            header, unverified = unverified_parts(token)
        except ValueError as exc:
            raise AuthenticationError(f"invalid ID token: {exc}") from None
        if unverified.get("iss") != p.issuer:
            raise AuthenticationError(f"the ID token's issuer {unverified.get('iss')!r} is not the configured issuer")
        alg = header.get("alg")
        if alg not in p.algorithms:
            raise AuthenticationError(f"the ID token's algorithm {alg!r} is not accepted (accepted: {p.algorithms})")
        kid = header.get("kid")
        keys = await self._jwks.keys_for(kid if isinstance(kid, str) else None)
        last: jwt.PyJWTError | None = None
        for published in keys:
            if published.alg is not None and published.alg != alg:
                continue  # the key is published for another algorithm
            try:
                claims: dict[str, Any] = jwt.decode(
                    token,
                    published.key.key,
                    algorithms=[alg],
                    audience=p.audience,
                    issuer=p.issuer,
                    leeway=p.leeway,
                    options={"require": ["iss", "sub", "aud", "exp", "iat"]},
                )
                return claims
            except jwt.InvalidSignatureError as exc:
                last = exc  # another key of the same kid may match
            except jwt.ExpiredSignatureError:
                raise AuthenticationError("the ID token has expired") from None
            except jwt.InvalidAudienceError:
                raise AuthenticationError("the ID token is not for this audience") from None
            except jwt.InvalidIssuerError:
                raise AuthenticationError("the ID token's issuer is not the configured issuer") from None
            except jwt.ImmatureSignatureError:
                raise AuthenticationError("the ID token is not valid yet") from None
            except jwt.PyJWTError as exc:
                raise AuthenticationError(f"invalid ID token: {exc}") from None
        if last is None:
            raise AuthenticationError(f"no key of the issuer allows algorithm {alg!r}")
        raise AuthenticationError("the ID token's signature does not verify against the issuer's keys")

    async def exchange(self, token: str) -> ExternalIdentity:
        return map_claims(self.provider, await self.verify(token), self._logger)

"""The ``auth`` config key: its schema (the plugin's ``config_schema``) and the values derived from it.

```yaml
auth:
  backstageTokenExpiration: 3600        # seconds, or {minutes: 30}; clamped to [600, 86400] like Backstage
  keyRotationSeconds: 3600              # a signing key signs this long, then a new one replaces it
  providers:
    guest:                              # works without this block, in development only
      userEntityRef: user:development/guest
      ownershipEntityRefs: [user:development/guest]
      dangerouslyAllowOutsideDevelopment: false
    oidcToken:                          # POST /api/auth/oidc-token/exchange, off unless configured
      issuer: https://idp.example.com
      jwksUrl: https://idp.example.com/.well-known/jwks.json
      audience: backstage               # or a list; required
      userEntityRefTemplate: "user:default/{email_local}"
      ownershipClaim: groups            # optional
```

Other keys under ``auth`` (Backstage's ``session``, other providers...) are allowed and ignored,
so an app-config shared with a Backstage backend passes. No value here is a secret: the signing
keys are generated in memory, never configured.
"""

from __future__ import annotations

import re
from typing import Annotated, Final

import msgspec

from .tokens import parse_entity_ref

__all__ = [
    "AuthConfig",
    "GuestProvider",
    "HumanDuration",
    "OidcTokenProvider",
    "Providers",
    "token_lifetime",
]

TOKEN_LIFETIME_DEFAULT: Final = 3600
TOKEN_LIFETIME_MIN: Final = 600
TOKEN_LIFETIME_MAX: Final = 86400
#: asymmetric algorithms accepted from an external issuer (never ``none`` nor ``HS*``)
ASYMMETRIC_ALGORITHMS: Final = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)

Positive = Annotated[float, msgspec.Meta(gt=0)]


class HumanDuration(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Backstage's duration object, e.g. ``{hours: 1, minutes: 30}``."""

    weeks: float = 0
    days: float = 0
    hours: float = 0
    minutes: float = 0
    seconds: float = 0
    milliseconds: float = 0

    def total_seconds(self) -> float:
        return (
            self.weeks * 604800
            + self.days * 86400
            + self.hours * 3600
            + self.minutes * 60
            + self.seconds
            + self.milliseconds / 1000
        )


class GuestProvider(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    """``auth.providers.guest`` (Backstage's guest provider)."""

    user_entity_ref: str = "user:development/guest"
    #: default: the user entity ref alone
    ownership_entity_refs: list[str] | None = None
    dangerously_allow_outside_development: bool = False

    def __post_init__(self) -> None:
        for ref in [self.user_entity_ref, *(self.ownership_entity_refs or [])]:
            parse_entity_ref(ref)  # ValueError: reported by `kernel config check` and at start-up


class OidcTokenProvider(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    """``auth.providers.oidcToken``: exchange an ID token of an external issuer for a user token."""

    #: the exact ``iss`` claim of accepted tokens
    issuer: str
    #: where the issuer publishes its public keys (JWKS)
    jwks_url: str
    #: the ``aud`` the tokens must carry (one of, for a list): tokens minted for other clients are refused
    audience: str | list[str]
    #: ``{claim}`` is replaced by that claim; ``{email_local}`` / ``{email_domain}`` are the parts of ``email``
    user_entity_ref_template: str = "user:default/{email_local}"
    #: a claim holding ownership refs (a string or a list; ``team-a`` means ``group:default/team-a``)
    ownership_claim: str | None = None
    algorithms: list[str] = msgspec.field(default_factory=lambda: list(ASYMMETRIC_ALGORITHMS))
    #: seconds of clock difference tolerated on ``exp``, ``iat`` and ``nbf``
    leeway: Annotated[float, msgspec.Meta(ge=0)] = 30

    def __post_init__(self) -> None:
        parse_entity_ref(re.sub(r"\{[A-Za-z0-9_]+\}", "x", self.user_entity_ref_template))
        bad = [a for a in self.algorithms if a not in ASYMMETRIC_ALGORITHMS]
        if bad or not self.algorithms:
            raise ValueError(f"algorithms must be a non-empty subset of {list(ASYMMETRIC_ALGORITHMS)}, got {bad}")


class Providers(msgspec.Struct, rename="camel", frozen=True):
    """``auth.providers``; other providers' keys are left alone."""

    guest: GuestProvider = msgspec.field(default_factory=GuestProvider)
    oidc_token: OidcTokenProvider | None = None


class AuthConfig(msgspec.Struct, rename="camel", frozen=True):
    """The ``auth`` key, the plugin's ``config_schema``."""

    backstage_token_expiration: float | HumanDuration = TOKEN_LIFETIME_DEFAULT
    key_rotation_seconds: Positive = 3600
    providers: Providers = msgspec.field(default_factory=Providers)


def token_lifetime(config: AuthConfig) -> int:
    """Seconds a user token lives: ``backstageTokenExpiration`` clamped to [10 min, 24 h] (Backstage's bounds)."""
    value = config.backstage_token_expiration
    seconds = value.total_seconds() if isinstance(value, HumanDuration) else float(value)
    return int(min(max(round(seconds), TOKEN_LIFETIME_MIN), TOKEN_LIFETIME_MAX))

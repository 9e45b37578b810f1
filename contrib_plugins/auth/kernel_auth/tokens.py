"""Backstage user tokens, pure: their format, entity refs, signing with a given key, the limited token.

No I/O and no clock: callers pass the key, the times and the claims. The wire format is
Backstage's (``@backstage/plugin-auth-backend`` ``issueUserToken``), so a Backstage backend
verifies our tokens and rebuilds their limited tokens:

* full token: header ``{"typ": "vnd.backstage.user", "alg": "ES256", "kid": ...}``, claims
  ``iss, sub, ent, aud ("backstage"), iat, exp, uip``;
* limited token: header ``{"typ":"vnd.backstage.limited-user","alg":...,"kid":...}`` and payload
  ``{"sub":...,"iat":...,"exp":...}``, exactly these keys in this order, JSON without spaces,
  base64url without padding. Its signature is the full token's ``uip`` claim ("user identity
  proof"), so anyone can rebuild it from the full token (``limited_token_of``), without the key.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey
from jwt.algorithms import ECAlgorithm

__all__ = [
    "ALGORITHM",
    "LIMITED_USER_TYP",
    "USER_AUDIENCE",
    "USER_TYP",
    "b64url",
    "b64url_decode",
    "limited_token_of",
    "parse_entity_ref",
    "sign_user_token",
    "unverified_parts",
]

USER_TYP: Final = "vnd.backstage.user"
LIMITED_USER_TYP: Final = "vnd.backstage.limited-user"
USER_AUDIENCE: Final = "backstage"
ALGORITHM: Final = "ES256"

_ES256: Final = ECAlgorithm(ECAlgorithm.SHA256)

# Backstage's default entity validators (catalog-model), checked on the parts of a ref
_KIND_RE: Final = re.compile(r"^[a-zA-Z][a-zA-Z0-9]*$")
_NAMESPACE_RE: Final = re.compile(r"^[a-z0-9]+(?:-+[a-z0-9]+)*$")
_NAME_RE: Final = re.compile(r"^(?:[a-zA-Z0-9]+[-_.])*[a-zA-Z0-9]+$")
_REF_RE: Final = re.compile(r"^(?:(?P<kind>[^:/]+):)?(?:(?P<namespace>[^:/]+)/)?(?P<name>[^:/]+)$")
_MAX_PART: Final = 63


def b64url(data: bytes) -> str:
    """Base64url without padding (JOSE)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """The bytes of unpadded base64url; ``ValueError`` if it is not base64url."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64url") from exc


def _json(value: Any) -> bytes:
    """JSON as JavaScript's ``JSON.stringify`` writes it: no spaces, non-ASCII left as UTF-8."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def parse_entity_ref(ref: str, *, default_kind: str | None = None, default_namespace: str = "default") -> str:
    """``ref`` as a full entity ref ``kind:namespace/name`` (kind and namespace lower-cased, as
    Backstage's ``stringifyEntityRef``); ``ValueError`` if it is not a valid one."""
    m = _REF_RE.match(ref) if isinstance(ref, str) else None
    if m is None:
        raise ValueError(f"{ref!r} is not an entity ref (kind:namespace/name)")
    kind = m["kind"] or default_kind
    namespace = (m["namespace"] or default_namespace).lower()
    name = m["name"]
    if kind is None:
        raise ValueError(f"entity ref {ref!r} has no kind")
    kind = kind.lower()
    for part, pattern in ((kind, _KIND_RE), (namespace, _NAMESPACE_RE), (name, _NAME_RE)):
        if len(part) > _MAX_PART or not pattern.match(part):
            raise ValueError(f"entity ref {ref!r}: {part!r} is not a valid kind, namespace or name")
    return f"{kind}:{namespace}/{name}"


def _limited_signing_input(alg: str, kid: str | None, sub: str, iat: int, exp: int) -> str:
    # The order and the keys must be exactly Backstage's: the limited token is rebuilt, not stored.
    header: dict[str, Any] = {"typ": LIMITED_USER_TYP, "alg": alg}
    if kid:
        header["kid"] = kid
    payload = {"sub": sub, "iat": iat, "exp": exp}
    return f"{b64url(_json(header))}.{b64url(_json(payload))}"


def sign_user_token(
    key: EllipticCurvePrivateKey,
    kid: str,
    *,
    issuer: str,
    sub: str,
    ent: list[str],
    iat: int,
    exp: int,
) -> str:
    """A full Backstage user token signed with ``key`` (ES256), its ``uip`` proving the limited token."""
    limited = _limited_signing_input(ALGORITHM, kid, sub, iat, exp)
    uip = b64url(_ES256.sign(limited.encode("ascii"), key))
    claims = {"iss": issuer, "sub": sub, "ent": ent, "aud": USER_AUDIENCE, "iat": iat, "exp": exp, "uip": uip}
    return jwt.encode(claims, key, algorithm=ALGORITHM, headers={"typ": USER_TYP, "kid": kid}, sort_headers=False)


def unverified_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a compact JWS, NOT verified; ``ValueError`` if it is not one."""
    parts = token.split(".") if isinstance(token, str) else []
    if len(parts) != 3:
        raise ValueError("not a compact JWS (three dot-separated parts)")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("not a compact JWS (undecodable header or payload)") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise ValueError("not a compact JWS (header and payload must be JSON objects)")
    return header, claims


def limited_token_of(full_token: str) -> str:
    """The limited user token of a full Backstage user token, rebuilt from its header, claims and ``uip``.

    Nothing is verified here: verify the result against the issuer's JWKS like any token (its
    signature is valid only if the full token was issued by the key it names). A limited token is
    returned as it is; ``ValueError`` for anything else.
    """
    header, claims = unverified_parts(full_token)
    typ = header.get("typ")
    if typ == LIMITED_USER_TYP:
        return full_token
    if typ != USER_TYP:
        raise ValueError(f"not a Backstage user token (typ {typ!r})")
    sub, iat, exp, uip = claims.get("sub"), claims.get("iat"), claims.get("exp"), claims.get("uip")
    alg = header.get("alg")
    if not (isinstance(sub, str) and isinstance(uip, str) and isinstance(alg, str)):
        raise ValueError("user token without sub, uip or alg: it cannot prove a limited token")
    if not (isinstance(iat, int) and isinstance(exp, int)) or isinstance(iat, bool) or isinstance(exp, bool):
        raise ValueError("user token without integer iat and exp")
    kid = header.get("kid")
    return f"{_limited_signing_input(alg, kid if isinstance(kid, str) else None, sub, iat, exp)}.{uip}"

"""The token formats of the reference system (Backstage), read without verifying.

- plugin token: header ``typ: vnd.backstage.plugin``; ``sub`` the calling plugin, ``aud`` the
  target plugin, ``iat``, ``exp`` (at most one hour), optional ``obo`` (a limited user token);
- user token: ``typ: vnd.backstage.user``; ``sub`` the user entity ref, ``ent`` ownership refs,
  ``aud: backstage``, ``uip`` (the signature of the matching limited token);
- limited user token: ``typ: vnd.backstage.limited-user``, payload ``{sub, iat, exp}`` signed by
  the same key; rebuilt from a user token without the private key (``limited_token_of``).

Parsing here needs no crypto library: a gateway only loads one when a token must be verified.
"""

from __future__ import annotations

import base64
import json
from typing import Any

PLUGIN_TYP = "vnd.backstage.plugin"
USER_TYP = "vnd.backstage.user"
LIMITED_USER_TYP = "vnd.backstage.limited-user"
USER_AUDIENCE = "backstage"
#: longest life of a plugin token, and of the signing key that makes them
PLUGIN_TOKEN_SECONDS = 3600
ALGORITHM = "ES256"


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def parts_of(token: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Header and claims of a compact JWS, unverified; ``None`` if it is not one."""
    segments = token.split(".")
    if len(segments) != 3:
        return None
    try:
        header, claims = json.loads(_b64decode(segments[0])), json.loads(_b64decode(segments[1]))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        return None
    return header, claims


def type_of(token: str) -> str | None:
    """The ``typ`` of a token's header (``None``: not a JWT, or no type)."""
    parts = parts_of(token)
    typ = parts[0].get("typ") if parts else None
    return typ if isinstance(typ, str) else None


def expiry_of(token: str) -> float | None:
    """The ``exp`` claim of a JWT, unverified (``None``: not a JWT or no expiry)."""
    parts = parts_of(token)
    exp = parts[1].get("exp") if parts else None
    return float(exp) if isinstance(exp, (int, float)) and not isinstance(exp, bool) else None


def limited_token_of(user_token: str) -> tuple[str, float]:
    """The limited token of a user token, and its expiry: the user token's ``uip`` signs it.

    As Backstage's ``createLimitedUserToken``: a limited token, or an untyped (older) user token,
    is returned as it is; a user token without ``uip`` cannot be limited and raises ``ValueError``,
    as does anything that is not a user token.
    """
    parts = parts_of(user_token)
    if parts is None:
        raise ValueError("not a JWT")
    header, claims = parts
    exp = claims.get("exp")
    if not isinstance(exp, (int, float)):
        raise ValueError("the user token has no expiry")
    typ = header.get("typ")
    if typ is None or typ == LIMITED_USER_TYP:
        return user_token, float(exp)
    if typ != USER_TYP:
        raise ValueError(f"a {typ} token is not a user token")
    if not claims.get("uip"):
        raise ValueError("the user token is missing its user identity proof ('uip')")
    # the order and keys of header and payload are those the issuer signed (as Backstage's auth backend),
    # serialised as JavaScript's JSON.stringify does: no spaces, non-ASCII left as UTF-8, absent keys left out
    limited_header = {"typ": LIMITED_USER_TYP, "alg": header.get("alg"), "kid": header.get("kid")}
    limited_claims = {"sub": claims.get("sub"), "iat": claims.get("iat"), "exp": exp}
    token = ".".join([_json_segment(limited_header), _json_segment(limited_claims), str(claims["uip"])])
    return token, float(exp)


def _json_segment(value: dict[str, Any]) -> str:
    present = {k: v for k, v in value.items() if v is not None}
    return b64encode(json.dumps(present, separators=(",", ":"), ensure_ascii=False).encode())

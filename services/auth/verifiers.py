"""Verifying plugin and user tokens against the issuers' published keys (JWKS).

Used by the gateways (through ``kernel_credential_verifiers``) before anything reaches a
plugin, and by the ``auth`` service inside workers. A token that is not of a verifier's kind
is ``None`` at once (no crypto); one of its kind that fails is an ``AuthenticationError``.
Keys are fetched with a ``JwksClient`` per issuer: a plugin's keys at
``<its base URL>/.backstage/auth/v1/jwks.json``, the user-token keys at
``<auth plugin base URL>/.well-known/jwks.json``; the base URLs come from discovery.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable
from typing import Any

from kernel.api import AuthenticationError, Discovery, Principal, ServiceUnavailableError, Verified
from kernel_services.auth.jwks import JwksClient, KeysUnavailable
from kernel_services.auth.tokens import (
    ALGORITHM,
    LIMITED_USER_TYP,
    PLUGIN_TOKEN_SECONDS,
    PLUGIN_TYP,
    USER_AUDIENCE,
    USER_TYP,
    parts_of,
)

PLUGIN_JWKS_PATH = "/.backstage/auth/v1/jwks.json"
USER_JWKS_PATH = "/.well-known/jwks.json"
AUTH_PLUGIN = "auth"
_PLUGIN_ID = re.compile(r"^[a-z0-9_-]+$", re.IGNORECASE)
#: clock skew tolerated on ``exp``/``iat``
LEEWAY = 30.0


class _Keys:
    """One ``JwksClient`` per issuer URL, and whether an unreachable issuer is ours (503) or not (401)."""

    def __init__(self, discovery: Discovery, own_origin: str | None) -> None:
        self._discovery = discovery
        self._own_origin = own_origin
        self._clients: dict[str, JwksClient] = {}

    def client(self, plugin_id: str, path: str) -> JwksClient:
        key = f"{plugin_id}{path}"
        client = self._clients.get(key)
        if client is None:

            async def url() -> str:
                return await self._discovery.get_base_url(plugin_id) + path

            client = self._clients[key] = JwksClient(url)
        return client

    async def key(self, plugin_id: str, path: str, kid: Any) -> Any:
        if not isinstance(kid, str):
            raise AuthenticationError("Invalid token: no key id")
        try:
            key = await self.client(plugin_id, path).get_key(kid)
        except KeysUnavailable as exc:
            base = await self._discovery.get_base_url(plugin_id)
            if exc.status == 503 and self._own_origin is not None and base.startswith(self._own_origin):
                # a plugin of this kernel that is starting: its keys come with its first worker
                raise ServiceUnavailableError(f"The keys of plugin '{plugin_id}' are not available yet") from None
            raise AuthenticationError(f"Cannot verify the token: {exc}") from None
        if key is None:
            raise AuthenticationError(f"Invalid token: unknown key id for plugin '{plugin_id}'")
        return key


def _decode(token: str, key: Any, audience: str | None, required: list[str], what: str) -> dict[str, Any]:
    import jwt

    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=audience,
            leeway=LEEWAY,
            options={"require": required, "verify_aud": audience is not None},
        )
    except jwt.ExpiredSignatureError:
        raise AuthenticationError(f"Expired {what}") from None
    except jwt.PyJWTError as exc:
        raise AuthenticationError(f"Failed {what} verification: {exc}") from None
    return claims


class UserTokenVerifier:
    """User tokens and limited user tokens issued by the ``auth`` plugin."""

    def __init__(self, keys: _Keys) -> None:
        self._keys = keys

    def verify(self, token: str) -> Awaitable[Verified] | None:
        parts = parts_of(token)
        if parts is None:
            return None
        header, claims = parts
        typ = header.get("typ")
        if typ not in (USER_TYP, LIMITED_USER_TYP) and not (typ is None and claims.get("aud") == USER_AUDIENCE):
            return None
        return self._verify(token, header, typ == LIMITED_USER_TYP)

    async def _verify(self, token: str, header: dict[str, Any], limited: bool) -> Verified:
        key = await self._keys.key(AUTH_PLUGIN, USER_JWKS_PATH, header.get("kid"))
        what = "limited user token" if limited else "user token"
        audience = None if limited else USER_AUDIENCE
        claims = _decode(token, key, audience, ["iat", "exp", "sub"], what)
        ent = claims.get("ent")
        refs = [r for r in ent if isinstance(r, str)] if isinstance(ent, list) else []
        principal = Principal("user", str(claims["sub"]), ownership_refs=refs)
        return Verified(principal, float(claims["exp"]), limited=limited)


class PluginTokenVerifier:
    """Tokens one plugin issues to call another: ``sub`` the caller, ``aud`` the one plugin it may reach."""

    def __init__(self, keys: _Keys, users: UserTokenVerifier) -> None:
        self._keys = keys
        self._users = users

    def verify(self, token: str) -> Awaitable[Verified] | None:
        parts = parts_of(token)
        if parts is None or parts[0].get("typ") != PLUGIN_TYP:
            return None
        return self._verify(token, parts[0], parts[1])

    async def _verify(self, token: str, header: dict[str, Any], unverified: dict[str, Any]) -> Verified:
        caller = unverified.get("sub")
        if not isinstance(caller, str) or not _PLUGIN_ID.match(caller):
            raise AuthenticationError("Invalid plugin token: missing or malformed subject")
        key = await self._keys.key(caller, PLUGIN_JWKS_PATH, header.get("kid"))
        claims = _decode(token, key, None, ["iat", "exp", "sub", "aud"], "plugin token")
        audience, exp = claims["aud"], float(claims["exp"])
        if not isinstance(audience, str):
            raise AuthenticationError("Invalid plugin token: the audience must be one plugin id")
        if exp - time.time() > PLUGIN_TOKEN_SECONDS + LEEWAY:
            raise AuthenticationError("Invalid plugin token: it lives longer than an hour")
        obo = claims.get("obo")
        if obo is None:
            return Verified(Principal("service", f"plugin:{caller}"), exp, audience=audience)
        pending = self._users.verify(obo) if isinstance(obo, str) else None
        if pending is None:
            raise AuthenticationError("Invalid plugin token: 'obo' is not a user token")
        user = await pending
        principal = Principal("user", user.principal.subject, actor=f"plugin:{caller}")
        return Verified(principal, min(exp, user.expires_at or exp), audience=audience)


def token_verifiers(
    discovery: Discovery, own_origin: str | None = None
) -> tuple[PluginTokenVerifier, UserTokenVerifier]:
    """The verifiers of plugin and user tokens, sharing one key cache."""
    keys = _Keys(discovery, own_origin)
    users = UserTokenVerifier(keys)
    return PluginTokenVerifier(keys, users), users

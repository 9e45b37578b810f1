"""Credentials checked in the gateway, before anything reaches plugin code.

``CredentialVerifier`` is the seam for the token system: today static
external-access tokens; plugin-to-plugin JWTs and JWKS entries plug in beside it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from kernel.config import Config, ConfigError
from kernel.errors import AuthenticationError, NotAllowedError
from kernel.protocol import NO_PRINCIPAL, AuthPolicy, Principal

USER_COOKIE = "kernel-user-token"


class CredentialVerifier(Protocol):
    """Turns a presented token into a principal, or ``None`` if it is not one of its tokens.

    ``cacheable``: a verified token stays valid for the life of the process (static
    tokens); expiring tokens (JWTs) must say ``False`` or cache with their expiry.
    """

    cacheable: bool

    def verify(self, token: str) -> Principal | None: ...


class StaticTokens:
    """``backend.auth.externalAccess`` entries of type ``static``.

    Lookup is by SHA-256 of the presented token (no secret-dependent early
    exit), then confirmed with ``hmac.compare_digest``.
    """

    cacheable = True

    def __init__(self, entries: Iterable[tuple[str, Principal]]) -> None:
        self._by_digest: dict[bytes, tuple[str, Principal]] = {}
        for token, principal in entries:
            self._by_digest[hashlib.sha256(token.encode()).digest()] = (token, principal)

    def verify(self, token: str) -> Principal | None:
        hit = self._by_digest.get(hashlib.sha256(token.encode()).digest())
        if hit is None or not hmac.compare_digest(hit[0].encode(), token.encode()):
            return None
        return hit[1]


def static_tokens_from_config(config: Config) -> StaticTokens:
    entries: list[tuple[str, Principal]] = []
    access = config.get_optional("backend.auth.externalAccess") or []
    if not isinstance(access, list):
        raise ConfigError("Invalid config: backend.auth.externalAccess must be a list")
    for i, raw in enumerate(access):
        where = f"backend.auth.externalAccess[{i}]"
        if not isinstance(raw, dict) or "type" not in raw:
            raise ConfigError(f"Invalid config: {where} must be an object with a 'type'")
        if raw["type"] != "static":
            continue  # other types (jwks, legacy) belong to the token system
        options = raw.get("options") or {}
        token, subject = options.get("token"), options.get("subject")
        if not isinstance(token, str) or len(token) < 8:
            raise ConfigError(f"Invalid config: {where}.options.token must be a string of 8+ characters")
        if not isinstance(subject, str) or not subject:
            raise ConfigError(f"Invalid config: {where}.options.subject must be a non-empty string")
        restrictions = _restrictions(raw.get("accessRestrictions"), where)
        entries.append((token, Principal("service", f"external:{subject}", restrictions)))
    return StaticTokens(entries)


def _restrictions(raw: Any, where: str) -> list[str] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(r, dict) and isinstance(r.get("plugin"), str) for r in raw):
        raise ConfigError(f"Invalid config: {where}.accessRestrictions must be a list of {{plugin: <id>}}")
    return [r["plugin"] for r in raw]


def policy_for(policies: Sequence[AuthPolicy], path: str) -> str | None:
    """The policy opening ``path`` (relative to the plugin mount); longest prefix first."""
    for p in policies:
        prefix = p.path.rstrip("/")
        if not prefix or path == prefix or path.startswith(prefix + "/"):
            return p.allow
    return None


def _credentials(headers: Sequence[tuple[bytes, bytes]], cookie_ok: bool) -> str | None:
    cookie = None
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token:
                return token.strip()
            return ""
        if cookie_ok and name == b"cookie":
            for part in value.decode("latin-1").split(";"):
                key, _, val = part.strip().partition("=")
                if key == USER_COOKIE:
                    cookie = val
    return cookie


class Authenticator:
    """Decides the principal of a request to a plugin, or raises 401/403."""

    def __init__(self, verifiers: Sequence[CredentialVerifier], cache_size: int = 1024) -> None:
        self._verifiers = list(verifiers)
        #: tokens verified before; only successes are kept, so guessing cannot grow it
        self._verified: dict[str, Principal] = {}
        self._cache_size = cache_size

    def authenticate(
        self, plugin_id: str, policies: Sequence[AuthPolicy], path: str, headers: Sequence[tuple[bytes, bytes]]
    ) -> Principal:
        allow = policy_for(policies, path) if policies else None
        token = _credentials(headers, allow == "user-cookie")
        if token is None:
            if allow == "unauthenticated":
                return NO_PRINCIPAL
            raise AuthenticationError("Missing credentials")
        principal = self._verify(token)
        if principal is None:
            if allow == "unauthenticated":
                return NO_PRINCIPAL  # an open path ignores stale credentials
            raise AuthenticationError("Invalid credentials")
        restrictions = principal.access_restrictions
        if restrictions is not None and plugin_id not in restrictions:
            raise NotAllowedError(f"This token may not access plugin '{plugin_id}'")
        return principal

    def _verify(self, token: str) -> Principal | None:
        principal = self._verified.get(token)
        if principal is not None:
            return principal
        for verifier in self._verifiers:
            principal = verifier.verify(token)
            if principal is not None and verifier.cacheable:
                if len(self._verified) >= self._cache_size:
                    self._verified.clear()
                self._verified[token] = principal
            if principal is not None:
                return principal
        return None

"""Credentials checked in the gateway, before anything reaches plugin code.

The verifiers come from the ``kernel_credential_verifiers`` hook (static
external-access tokens are ``kernel.gateway.static_tokens``; the token system
plugs in the same way) and are replaced after every config reload.
"""

from __future__ import annotations

from collections.abc import Sequence

from kernel.errors import AuthenticationError, NotAllowedError
from kernel.hooktypes import CredentialVerifier
from kernel.protocol import NO_PRINCIPAL, AuthPolicy, Principal

USER_COOKIE = "kernel-user-token"


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

    def replace_verifiers(self, verifiers: Sequence[CredentialVerifier]) -> None:
        """Use ``verifiers`` from now on (after a config reload); tokens verified before are forgotten."""
        self._verifiers = list(verifiers)
        self._verified = {}

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

"""Credentials checked in the gateway, before anything reaches plugin code.

The verifiers come from the ``kernel_credential_verifiers`` hook (static
external-access tokens are ``kernel.gateway.static_tokens``; the token system
plugs in the same way) and are replaced after every config reload.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Sequence

from kernel.core_services import presented_token
from kernel.errors import AuthenticationError, NotAllowedError
from kernel.hooktypes import CredentialVerifier, Verified, verify_token
from kernel.protocol import NO_PRINCIPAL, AuthPolicy, Principal


def policy_for(policies: Sequence[AuthPolicy], path: str) -> str | None:
    """The policy opening ``path`` (relative to the plugin mount); longest prefix first."""
    for p in policies:
        prefix = p.path.rstrip("/")
        if not prefix or path == prefix or path.startswith(prefix + "/"):
            return p.allow
    return None


class Authenticator:
    """Decides the principal of a request to a plugin, or raises 401/403.

    ``authenticate`` answers at once (no allocation) for a token verified before and still
    valid; otherwise it returns an awaitable, since a verifier may have to fetch keys.
    """

    def __init__(self, verifiers: Sequence[CredentialVerifier], cache_size: int = 1024) -> None:
        self._verifiers = list(verifiers)
        #: tokens verified before; only successes are kept, so guessing cannot grow it
        self._verified: dict[str, Verified] = {}
        self._cache_size = cache_size

    def replace_verifiers(self, verifiers: Sequence[CredentialVerifier]) -> None:
        """Use ``verifiers`` from now on (after a config reload); tokens verified before are forgotten."""
        self._verifiers = list(verifiers)
        self._verified = {}

    def authenticate(
        self, plugin_id: str, policies: Sequence[AuthPolicy], path: str, headers: Sequence[tuple[bytes, bytes]]
    ) -> Principal | Awaitable[Principal]:
        allow = policy_for(policies, path) if policies else None
        token = presented_token(headers, allow == "user-cookie")
        if token is None:
            if allow == "unauthenticated":
                return NO_PRINCIPAL
            raise AuthenticationError("Missing credentials")
        hit = self._verified.get(token)
        if hit is not None and (hit.expires_at is None or hit.expires_at > time.time()):
            return _admit(hit, plugin_id, allow)
        return self._verify_and_admit(token, plugin_id, allow)

    async def _verify_and_admit(self, token: str, plugin_id: str, allow: str | None) -> Principal:
        try:
            verified = await verify_token(self._verifiers, token)
        except AuthenticationError:
            if allow == "unauthenticated":
                return NO_PRINCIPAL  # an open path ignores stale credentials
            raise
        if verified is None:
            if allow == "unauthenticated":
                return NO_PRINCIPAL
            raise AuthenticationError("Invalid credentials")
        if len(self._verified) >= self._cache_size:
            self._verified.clear()
        self._verified[token] = verified
        return _admit(verified, plugin_id, allow)


def _admit(verified: Verified, plugin_id: str, allow: str | None) -> Principal:
    """The principal of a verified token, if it may reach ``plugin_id`` on a path opened with ``allow``."""
    if verified.limited and allow != "user-cookie":
        if allow == "unauthenticated":
            return NO_PRINCIPAL
        raise AuthenticationError("A limited user token is accepted only where the plugin allows user cookies")
    if verified.audience is not None and verified.audience != plugin_id:
        raise AuthenticationError(f"This token is for plugin '{verified.audience}', not '{plugin_id}'")
    principal = verified.principal
    restrictions = principal.access_restrictions
    if restrictions is not None and plugin_id not in restrictions:
        if not plugin_id:  # an endpoint of the kernel's own (instance metadata, ...), outside every plugin
            allowed = f"only access plugins: {', '.join(restrictions)}" if restrictions else "not access any plugin"
            raise NotAllowedError(
                f"This token may {allowed}; not the kernel's own endpoints, such as its instance metadata"
            )
        raise NotAllowedError(f"This token may not access plugin '{plugin_id}'")
    return principal

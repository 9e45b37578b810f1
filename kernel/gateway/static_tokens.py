"""Static external-access tokens: ``backend.auth.externalAccess`` entries of type ``static``.

A built-in hook provider: the gateway gets this verifier through
``kernel_credential_verifiers`` like any other. Lookup is by SHA-256 of the
presented token (no secret-dependent early exit), then confirmed with
``hmac.compare_digest``.

``accessRestrictions`` (every type, as Backstage reads them): ``[{plugin, permission?,
permissionAttribute?: {action?}}]``; names may be a list or a comma/space separated string.
The principal carries the plugin ids (the gateway refuses others with 403) and, per plugin
naming permissions or actions, a ``PermissionRestriction`` the permissions service enforces.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kernel.core_services import RootConfig
from kernel.errors import ConfigError
from kernel.hookspecs import hookimpl
from kernel.hooktypes import CredentialVerifier, Verified
from kernel.protocol import Principal
from kernel.settings import access_restrictions_of, read_settings

MIN_TOKEN_LENGTH = 8


class StaticTokens:
    """Verifies the configured static tokens; each maps to a ``service`` principal ``external:<subject>``."""

    def __init__(self, entries: Iterable[tuple[str, Principal]]) -> None:
        self._by_digest: dict[bytes, tuple[str, Verified]] = {}
        for token, principal in entries:
            self._by_digest[hashlib.sha256(token.encode()).digest()] = (token, Verified(principal))

    def verify(self, token: str) -> Verified | None:
        hit = self._by_digest.get(hashlib.sha256(token.encode()).digest())
        if hit is None or not hmac.compare_digest(hit[0].encode(), token.encode()):
            return None
        return hit[1]


def static_tokens_from_config(config: RootConfig) -> StaticTokens:
    """The static tokens of ``config``; a bad entry is a ``ConfigError`` naming it."""
    entries: list[tuple[str, Principal]] = []
    typed = read_settings(config).auth.external_access  # checks the shape of every entry
    raw: list[Mapping[str, Any]] = config.get_optional("backend.auth.externalAccess") or []
    for i, (entry, raw_entry) in enumerate(zip(typed, raw)):
        if entry.type != "static":
            continue  # other types (jwks, legacy) belong to the token system
        where = f"backend.auth.externalAccess[{i}]"
        token, subject = entry.options.get("token"), entry.options.get("subject")
        if not isinstance(token, str) or len(token) < MIN_TOKEN_LENGTH:
            raise ConfigError(
                f"Invalid config: {where}.options.token must be a string of {MIN_TOKEN_LENGTH}+ characters"
            )
        if not isinstance(subject, str) or not subject:
            raise ConfigError(f"Invalid config: {where}.options.subject must be a non-empty string")
        plugins, permissions = access_restrictions_of(raw_entry, where)
        entries.append(
            (token, Principal("service", f"external:{subject}", plugins, permission_restrictions=permissions))
        )
    return StaticTokens(entries)


@hookimpl
def kernel_credential_verifiers(config: RootConfig) -> Sequence[CredentialVerifier]:
    return [static_tokens_from_config(config)]

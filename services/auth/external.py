"""External callers' JWTs: ``backend.auth.externalAccess`` entries of type ``legacy`` and ``jwks``.

Backstage's behaviour (``backend-defaults``, ``entrypoints/auth/external``), with PyJWT:

- ``legacy`` (``options: {secret, subject}``): an HS256 JWT signed with the base64-decoded
  ``secret``, ``sub`` exactly ``backstage-server``, no ``aud``, and an ``exp``. Any other ``alg``,
  ``sub`` or an ``aud`` is not a legacy token (``None``); one that fails against every secret,
  or has expired, is a 401. The caller is ``external:<subject>``.
- ``jwks`` (``options: {url, issuer, audience?, algorithm?, subjectPrefix?, timeoutSeconds?}``):
  a JWT whose ``iss`` is one of ``issuer`` and whose ``alg`` is one of ``algorithm`` (default:
  every asymmetric JWS algorithm, as jose accepts with a remote key set; never HS* or none),
  verified with the key its ``kid`` names at ``url``. ``audience``: the ``aud`` must name one.
  The caller is ``external:<subjectPrefix>:<sub>`` (``external:<sub>`` without a prefix).
  Keys that cannot be had within ``timeoutSeconds`` (default 5, jose's default) are a 401.
  Unlike Backstage, ``issuer`` and the ``exp`` claim are required.
- Both: ``accessRestrictions`` as for ``static`` (``access_restrictions_of``); strings of names
  may be comma/space separated. Tokens with a ``vnd.backstage.*`` ``typ`` belong to the token
  system and are never taken here. A success is cached by the gateway until ``exp``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import math
import re
import warnings
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jwt

from kernel.api import (
    AuthenticationError,
    ConfigError,
    ConfigReader,
    CredentialVerifier,
    Principal,
    Verified,
    access_restrictions_of,
    read_settings,
    split_names,
)
from kernel_services.auth.jwks import DEFAULT_TIMEOUT, JwksClient, KeysUnavailable
from kernel_services.auth.tokens import parts_of

__all__ = ["JwksTokens", "LegacyTokens", "external_verifiers"]

log = logging.getLogger("kernel.auth.external")

LEGACY_SUBJECT = "backstage-server"
LEGACY_ALGORITHM = "HS256"
#: what a ``jwks`` entry accepts without ``algorithm``: the asymmetric JWS algorithms
ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
#: the token system's own token types (plugin, user, limited user)
BACKSTAGE_TYP_PREFIX = "vnd.backstage."
_LEGACY_OPTIONS = frozenset({"secret", "subject"})
_JWKS_OPTIONS = frozenset({"url", "issuer", "audience", "algorithm", "subjectPrefix", "timeoutSeconds"})
_NO_SPACE = re.compile(r"^\S+$")


def _bad(where: str, message: str) -> ConfigError:
    return ConfigError(f"Invalid config: {where} {message}")


# ---------------------------------------------------------------------------- access restrictions


def _principal(subject: str, entry: Mapping[str, Any], where: str) -> Principal:
    plugins, permissions = access_restrictions_of(entry, where)
    return Principal("service", subject, plugins, permission_restrictions=permissions)


def _backstage_typ(header: Mapping[str, Any]) -> bool:
    typ = header.get("typ")
    return isinstance(typ, str) and typ.startswith(BACKSTAGE_TYP_PREFIX)


# ---------------------------------------------------------------------------- legacy


def _decode_secret(secret: str, where: str) -> bytes:
    """Base64 (standard or URL-safe alphabet, padding optional), as Backstage reads ``options.secret``."""
    text = secret.replace("-", "+").replace("_", "/").rstrip("=")
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not key:
        raise _bad(f"{where}.options.secret", "must be a valid base64 string")
    return key


def _decode_legacy(token: str, key: bytes) -> dict[str, Any]:
    options: Any = {"require": ["exp"], "verify_iat": False}  # jose checks no iat either
    if len(key) >= 32:
        return jwt.decode(token, key, algorithms=[LEGACY_ALGORITHM], options=options)
    with warnings.catch_warnings():  # Backstage's docs suggest 24-byte secrets; PyJWT warns below 32
        warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
        return jwt.decode(token, key, algorithms=[LEGACY_ALGORITHM], options=options)


class LegacyTokens:
    """Verifies ``legacy`` tokens: HS256, ``sub: backstage-server``, signed by one of the secrets."""

    def __init__(self, entries: Sequence[tuple[bytes, Principal]]) -> None:
        self._entries = list(entries)

    def verify(self, token: str) -> Verified | None:
        parts = parts_of(token)
        if parts is None:
            return None  # not a JWT: a static token, or nothing
        header, claims = parts
        if header.get("alg") != LEGACY_ALGORITHM or _backstage_typ(header):
            return None
        if claims.get("sub") != LEGACY_SUBJECT or claims.get("aud"):
            return None
        for key, principal in self._entries:
            try:
                verified = _decode_legacy(token, key)
            except jwt.InvalidSignatureError:
                continue  # another secret may have signed it
            except jwt.ExpiredSignatureError:
                raise AuthenticationError("Expired legacy token") from None
            except jwt.PyJWTError as exc:
                raise AuthenticationError(f"Invalid legacy token: {exc}") from None
            return Verified(principal, expires_at=float(verified["exp"]))
        raise AuthenticationError("Invalid legacy token: signed by none of the configured secrets")


def _legacy_entry(options: Mapping[str, Any], entry: Mapping[str, Any], where: str) -> tuple[bytes, Principal]:
    unknown = sorted(set(options) - _LEGACY_OPTIONS)
    if unknown:
        raise _bad(f"{where}.options", f"has unknown key '{unknown[0]}', expected secret and subject")
    secret, subject = options.get("secret"), options.get("subject")
    if not isinstance(secret, str) or not _NO_SPACE.match(secret):
        raise _bad(f"{where}.options.secret", "must be a valid base64 string")
    if not isinstance(subject, str) or not _NO_SPACE.match(subject):
        raise _bad(f"{where}.options.subject", "must be a string of non-space characters")
    return _decode_secret(secret, where), _principal(f"external:{subject}", entry, where)


# ---------------------------------------------------------------------------- jwks


UNAVAILABLE = "Invalid external token: its signing keys are unavailable"


class _KeySet:
    """The keys at one JWKS URL, each lookup answered within ``timeout``; remembers a failed fetch."""

    def __init__(self, url: str, timeout: float) -> None:
        async def jwks_url() -> str:
            return url

        self.url, self.timeout = url, timeout
        self._client = JwksClient(jwks_url, timeout=timeout)
        self._failing = False  # the last fetch failed: an unknown key id says so until a key is found

    async def key(self, kid: str) -> jwt.PyJWK:
        try:
            key = await asyncio.wait_for(self._client.get_key(kid), self.timeout)
        except TimeoutError:
            self._failing = True
            log.warning("external access: %s did not answer within %gs", self.url, self.timeout)
            raise AuthenticationError(UNAVAILABLE) from None
        except KeysUnavailable as exc:
            self._failing = True
            log.warning("external access: %s", exc)
            raise AuthenticationError(UNAVAILABLE) from None
        if key is None:
            raise AuthenticationError(UNAVAILABLE if self._failing else "Invalid external token: unknown key id")
        self._failing = False
        return key


@dataclass(frozen=True)
class _JwksEntry:
    keys: _KeySet
    issuers: tuple[str, ...]
    algorithms: tuple[str, ...]
    audiences: list[str] | None
    prefix: str
    principal: Principal  # the subject is filled in per token

    def accepts(self, header: Mapping[str, Any], claims: Mapping[str, Any]) -> bool:
        return header.get("alg") in self.algorithms and claims.get("iss") in self.issuers

    async def verify(self, token: str, kid: str) -> Verified:
        key = await self.keys.key(kid)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=list(self.algorithms),
                issuer=self.issuers,
                audience=self.audiences,
                options={"require": ["exp", "sub"], "verify_aud": self.audiences is not None, "verify_iat": False},
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("Expired external token") from None
        except jwt.PyJWTError as exc:
            raise AuthenticationError(f"Invalid external token: {exc}") from None
        sub = claims["sub"]
        if not isinstance(sub, str) or not sub:
            raise AuthenticationError("Invalid external token: no subject")
        subject = f"external:{self.prefix}:{sub}" if self.prefix else f"external:{sub}"
        principal = Principal(
            "service",
            subject,
            self.principal.access_restrictions,
            permission_restrictions=self.principal.permission_restrictions,
        )
        return Verified(principal, expires_at=float(claims["exp"]))


class JwksTokens:
    """Verifies ``jwks`` tokens against the entries whose issuer and algorithm they name."""

    def __init__(self, entries: Sequence[_JwksEntry]) -> None:
        self._entries = list(entries)

    def verify(self, token: str) -> Awaitable[Verified] | None:
        parts = parts_of(token)
        if parts is None:
            return None
        header, claims = parts
        if _backstage_typ(header):
            return None
        candidates = [entry for entry in self._entries if entry.accepts(header, claims)]
        if not candidates:
            return None  # another issuer's, or an algorithm no entry takes (none, HS256)
        return self._verify(token, header.get("kid"), candidates)

    async def _verify(self, token: str, kid: Any, candidates: list[_JwksEntry]) -> Verified:
        if not isinstance(kid, str) or not kid:
            raise AuthenticationError("Invalid external token: no key id")
        failure: AuthenticationError | None = None
        for entry in candidates:
            try:
                return await entry.verify(token, kid)
            except AuthenticationError as exc:
                failure = exc  # another entry for the same issuer may take it
        assert failure is not None
        raise failure


def _url(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _NO_SPACE.match(value):
        raise _bad(f"{where}.options.url", "must be a URL without spaces")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise _bad(f"{where}.options.url", "must be an http(s) URL")
    return value


def _timeout(value: Any, where: str) -> float:
    if value is None:
        return DEFAULT_TIMEOUT
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0 and math.isfinite(value)):
        raise _bad(f"{where}.options.timeoutSeconds", "must be a positive number")
    return float(value)


def _jwks_entry(
    options: Mapping[str, Any], entry: Mapping[str, Any], where: str, key_sets: dict[tuple[str, float], _KeySet]
) -> _JwksEntry:
    unknown = sorted(set(options) - _JWKS_OPTIONS)
    if unknown:
        raise _bad(
            f"{where}.options", f"has unknown key '{unknown[0]}', expected one of {', '.join(sorted(_JWKS_OPTIONS))}"
        )
    url = _url(options.get("url"), where)
    issuers = split_names(options["issuer"], f"{where}.options.issuer") if options.get("issuer") is not None else None
    if not issuers:
        raise _bad(f"{where}.options.issuer", "is required: the issuer(s) whose tokens to accept")
    audiences = None
    if options.get("audience") is not None:
        audiences = split_names(options["audience"], f"{where}.options.audience")
    algorithms = tuple(ASYMMETRIC_ALGORITHMS)
    if options.get("algorithm") is not None:
        listed = split_names(options["algorithm"], f"{where}.options.algorithm", ASYMMETRIC_ALGORITHMS)
        algorithms = tuple(listed or algorithms)
    prefix = options.get("subjectPrefix")
    if prefix is not None and (not isinstance(prefix, str) or (prefix and not _NO_SPACE.match(prefix))):
        raise _bad(f"{where}.options.subjectPrefix", "must be a string of non-space characters")
    timeout = _timeout(options.get("timeoutSeconds"), where)
    keys = key_sets.get((url, timeout))
    if keys is None:
        keys = key_sets[(url, timeout)] = _KeySet(url, timeout)
    principal = _principal("", entry, where)
    return _JwksEntry(keys, tuple(issuers), algorithms, audiences, prefix or "", principal)


# ---------------------------------------------------------------------------- from config


def external_verifiers(config: ConfigReader) -> list[CredentialVerifier]:
    """The verifiers of the ``legacy`` and ``jwks`` entries of ``backend.auth.externalAccess``.

    A mistake is a ``ConfigError`` naming the entry (``backend.auth.externalAccess[i]...``).
    Other types (``static``, a package's own) are left to their verifiers.
    """
    typed = read_settings(config).auth.external_access  # checks the shape of every entry
    raw: list[Mapping[str, Any]] = config.get_optional("backend.auth.externalAccess") or []
    legacy: list[tuple[bytes, Principal]] = []
    jwks: list[_JwksEntry] = []
    key_sets: dict[tuple[str, float], _KeySet] = {}
    for i, (entry, settings) in enumerate(zip(raw, typed)):
        where = f"backend.auth.externalAccess[{i}]"
        if settings.type == "legacy":
            key, principal = _legacy_entry(settings.options, entry, where)
            if any(key == known for known, _ in legacy):
                raise _bad(f"{where}.options.secret", "is declared by another legacy entry already")
            legacy.append((key, principal))
        elif settings.type == "jwks":
            jwks.append(_jwks_entry(settings.options, entry, where, key_sets))
    verifiers: list[CredentialVerifier] = []
    if legacy:
        verifiers.append(LegacyTokens(legacy))
    if jwks:
        verifiers.append(JwksTokens(jwks))
    return verifiers

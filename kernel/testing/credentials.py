"""``mock_credentials``: callers a test presents, as tokens, and the principals they stand for.

Backstage's ``mockCredentials`` with its token strings (``mock-user-token``,
``mock-user-token:{"sub": ...}``, ``mock-limited-user-token:...``, ``mock-service-token``, ...), so a
test reads the same in both. The test backend's gateway accepts them through ``MockCredentialVerifier``
(a ``CredentialVerifier``, as the real verifiers are) and a handler sees, with
``kernel.api.principal_of(request)``, the ``Principal`` the real token system would produce:

- ``user(ref)``: ``Principal("user", ref, ownership_refs=[ref])`` (a user token's ``ent``);
- ``limited_user(ref)``: ``Principal("user", ref)``, accepted only on ``user-cookie`` paths;
- ``service(subject, access_restrictions)``: ``Principal("service", subject, [plugin ids], ...)``,
  restrictions in the config's shape (``["catalog"]`` or ``[{"plugin": ..., "permission": ...}]``);
- ``none()``: no caller (its header is refused as "Missing credentials" on protected paths).

``.header()`` is a dict for an HTTP client (``{"Authorization": "Bearer ..."}``); Backstage returns
the value alone. Each kind also has ``invalid_token()`` / ``invalid_header()``: a 401 everywhere.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kernel.core_services import USER_COOKIE, Credentials
from kernel.errors import AuthenticationError
from kernel.hooktypes import Verified
from kernel.protocol import Principal
from kernel.settings import access_restrictions_of

__all__ = [
    "DEFAULT_MOCK_SERVICE_SUBJECT",
    "DEFAULT_MOCK_USER_ENTITY_REF",
    "MockCredentialVerifier",
    "MockCredentials",
    "is_mock_token",
    "mock_credentials",
    "verify_mock_token",
]

DEFAULT_MOCK_USER_ENTITY_REF = "user:default/mock"
DEFAULT_MOCK_SERVICE_SUBJECT = "external:test-service"
MOCK_NONE_TOKEN = "mock-none-token"
MOCK_USER_TOKEN = "mock-user-token"
MOCK_USER_TOKEN_PREFIX = "mock-user-token:"
MOCK_INVALID_USER_TOKEN = "mock-invalid-user-token"
MOCK_USER_LIMITED_TOKEN_PREFIX = "mock-limited-user-token:"
MOCK_INVALID_USER_LIMITED_TOKEN = "mock-invalid-limited-user-token"
MOCK_SERVICE_TOKEN = "mock-service-token"
MOCK_SERVICE_TOKEN_PREFIX = "mock-service-token:"
MOCK_INVALID_SERVICE_TOKEN = "mock-invalid-service-token"
_INVALID = {
    MOCK_INVALID_USER_TOKEN: "User token is invalid",
    MOCK_INVALID_USER_LIMITED_TOKEN: "Limited user token is invalid",
    MOCK_INVALID_SERVICE_TOKEN: "Service token is invalid",
}
_ENTITY_REF = re.compile(r"^.+:.+/.+$")

#: one access restriction: a plugin id, or an ``accessRestrictions`` entry of the config
Restriction = str | Mapping[str, Any]


def _check_ref(ref: str) -> str:
    if not isinstance(ref, str) or not _ENTITY_REF.match(ref):
        raise TypeError(f"Invalid user entity reference {ref!r}, expected <kind>:<namespace>/<name>")
    return ref


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass(frozen=True)
class MockCredentials:
    """One mock caller: the principal the backend sees, and the token that makes it see it."""

    principal: Principal
    _token: str = field(repr=False)
    _invalid: str = field(repr=False)

    @property
    def credentials(self) -> Credentials:
        """As the ``auth``/``http_auth`` services hand it around (for unit tests of services)."""
        return Credentials(self.principal, None, self._token)

    def token(self) -> str:
        return self._token

    def header(self) -> dict[str, str]:
        """``{"Authorization": "Bearer <token>"}``."""
        return _bearer(self._token)

    def cookie(self) -> dict[str, str]:
        """The token as the user cookie (``Cookie: backstage-auth=<token>``), for ``user-cookie`` paths."""
        return {"Cookie": f"{USER_COOKIE}={self._token}"}

    def invalid_token(self) -> str:
        return self._invalid

    def invalid_header(self) -> dict[str, str]:
        return _bearer(self._invalid)


class _None:
    def __call__(self) -> MockCredentials:
        return MockCredentials(Principal(), MOCK_NONE_TOKEN, MOCK_INVALID_USER_TOKEN)

    def token(self) -> str:
        return MOCK_NONE_TOKEN

    def header(self) -> dict[str, str]:
        """An explicit "no credentials": refused where credentials are needed, ``none`` where not."""
        return _bearer(MOCK_NONE_TOKEN)


class _User:
    def __call__(
        self, ref: str = DEFAULT_MOCK_USER_ENTITY_REF, *, ownership_refs: Sequence[str] | None = None
    ) -> MockCredentials:
        """A user; ``ownership_refs`` (default ``[ref]``) are its token's ``ent`` claim."""
        _check_ref(ref)
        refs = [ref] if ownership_refs is None else list(ownership_refs)
        if ref == DEFAULT_MOCK_USER_ENTITY_REF and ownership_refs is None:
            token = MOCK_USER_TOKEN
        else:
            token = MOCK_USER_TOKEN_PREFIX + json.dumps({"sub": ref, "ent": refs}, separators=(",", ":"))
        return MockCredentials(Principal("user", ref, ownership_refs=refs), token, MOCK_INVALID_USER_TOKEN)

    def token(self, ref: str | None = None) -> str:
        return self(ref or DEFAULT_MOCK_USER_ENTITY_REF).token()

    def header(self, ref: str | None = None) -> dict[str, str]:
        return _bearer(self.token(ref))

    def invalid_token(self) -> str:
        return MOCK_INVALID_USER_TOKEN

    def invalid_header(self) -> dict[str, str]:
        return _bearer(MOCK_INVALID_USER_TOKEN)


class _LimitedUser:
    def __call__(self, ref: str = DEFAULT_MOCK_USER_ENTITY_REF) -> MockCredentials:
        """A limited user token (as in the user cookie): accepted only on paths opened with ``user-cookie``."""
        token = MOCK_USER_LIMITED_TOKEN_PREFIX + json.dumps({"sub": _check_ref(ref)}, separators=(",", ":"))
        return MockCredentials(Principal("user", ref), token, MOCK_INVALID_USER_LIMITED_TOKEN)

    def token(self, ref: str | None = None) -> str:
        return self(ref or DEFAULT_MOCK_USER_ENTITY_REF).token()

    def cookie(self, ref: str | None = None) -> dict[str, str]:
        return self(ref or DEFAULT_MOCK_USER_ENTITY_REF).cookie()

    def invalid_token(self) -> str:
        return MOCK_INVALID_USER_LIMITED_TOKEN

    def invalid_cookie(self) -> dict[str, str]:
        return {"Cookie": f"{USER_COOKIE}={MOCK_INVALID_USER_LIMITED_TOKEN}"}


class _Service:
    def __call__(
        self,
        subject: str = DEFAULT_MOCK_SERVICE_SUBJECT,
        access_restrictions: Sequence[Restriction] | None = None,
        *,
        target_plugin_id: str | None = None,
        on_behalf_of: MockCredentials | None = None,
    ) -> MockCredentials:
        """A service (``plugin:<id>`` or ``external:<name>``), limited to ``access_restrictions`` if given.

        ``target_plugin_id``: a plugin-to-plugin token, good for that plugin only (its ``aud``);
        ``on_behalf_of``: a user's credentials, carried as the token's ``obo`` (the backend then sees the user).
        """
        payload: dict[str, Any] = {"sub": subject}
        if access_restrictions is not None:
            payload["accessRestrictions"] = [_restriction(r) for r in access_restrictions]
        if target_plugin_id is not None:
            payload["target"] = target_plugin_id
        if on_behalf_of is not None:
            if on_behalf_of.principal.type != "user":
                raise TypeError("on_behalf_of must be a user's mock credentials")
            payload["obo"] = on_behalf_of.principal.subject
        default = payload == {"sub": DEFAULT_MOCK_SERVICE_SUBJECT}
        token = (
            MOCK_SERVICE_TOKEN if default else MOCK_SERVICE_TOKEN_PREFIX + json.dumps(payload, separators=(",", ":"))
        )
        verified = verify_mock_token(token)
        assert verified is not None
        return MockCredentials(verified.principal, token, MOCK_INVALID_SERVICE_TOKEN)

    def token(self) -> str:
        return MOCK_SERVICE_TOKEN

    def header(self) -> dict[str, str]:
        return _bearer(MOCK_SERVICE_TOKEN)

    def invalid_token(self) -> str:
        return MOCK_INVALID_SERVICE_TOKEN

    def invalid_header(self) -> dict[str, str]:
        return _bearer(MOCK_INVALID_SERVICE_TOKEN)


def _restriction(value: Restriction) -> dict[str, Any]:
    return {"plugin": value} if isinstance(value, str) else dict(value)


class _MockCredentials:
    """``mock_credentials.user()``, ``.user("user:default/jane").header()``, ``.service.invalid_header()``..."""

    none = _None()
    user = _User()
    limited_user = _LimitedUser()
    service = _Service()


mock_credentials = _MockCredentials()


# ----------------------------------------------------------------------------- reading them back


def is_mock_token(token: str) -> bool:
    return token.startswith("mock-")


def _payload(token: str, prefix: str) -> dict[str, Any]:
    try:
        payload = json.loads(token[len(prefix) :])
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        raise AuthenticationError(f"Malformed mock token {token!r}")
    return payload


def verify_mock_token(token: str) -> Verified | None:
    """What a mock token stands for; ``None`` if it is not one; ``AuthenticationError`` if it is invalid."""
    if not is_mock_token(token):
        return None
    if token == MOCK_USER_TOKEN:
        return Verified(mock_credentials.user().principal)
    if token.startswith(MOCK_USER_TOKEN_PREFIX):
        payload = _payload(token, MOCK_USER_TOKEN_PREFIX)
        ref = _check_ref(str(payload.get("sub", DEFAULT_MOCK_USER_ENTITY_REF)))
        refs = payload.get("ent")
        owned = [r for r in refs if isinstance(r, str)] if isinstance(refs, list) else [ref]
        return Verified(Principal("user", ref, ownership_refs=owned, actor=str(payload.get("actor") or "")))
    if token.startswith(MOCK_USER_LIMITED_TOKEN_PREFIX):
        ref = _check_ref(str(_payload(token, MOCK_USER_LIMITED_TOKEN_PREFIX).get("sub", "")))
        return Verified(Principal("user", ref), limited=True)
    if token == MOCK_SERVICE_TOKEN:
        return Verified(Principal("service", DEFAULT_MOCK_SERVICE_SUBJECT))
    if token.startswith(MOCK_SERVICE_TOKEN_PREFIX):
        return _service(_payload(token, MOCK_SERVICE_TOKEN_PREFIX))
    if token == MOCK_NONE_TOKEN:
        raise AuthenticationError("Missing credentials")
    raise AuthenticationError(_INVALID.get(token, f"Unknown mock token {token[:60]!r}"))


def _service(payload: dict[str, Any]) -> Verified:
    subject = str(payload.get("sub") or DEFAULT_MOCK_SERVICE_SUBJECT)
    target = payload.get("target")
    audience = target if isinstance(target, str) else None
    obo = payload.get("obo")
    if isinstance(obo, str):
        return Verified(Principal("user", _check_ref(obo), actor=subject), audience=audience)
    plugins, permissions = access_restrictions_of(payload, "mock service token")
    principal = Principal("service", subject, plugins, permission_restrictions=permissions)
    return Verified(principal, audience=audience)


class MockCredentialVerifier:
    """A ``kernel.api.CredentialVerifier`` of mock tokens: the test backend's gateway uses it first.

    Any other token is left to the other verifiers (static tokens of the config still work).
    """

    def verify(self, token: str) -> Verified | None:
        return verify_mock_token(token)

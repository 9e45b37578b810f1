"""Gateway credential checks: policy matching, static tokens, restrictions, config errors."""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import Awaitable
from typing import Any

import pytest

from kernel.config import Config, ConfigError
from kernel.errors import AuthenticationError, NotAllowedError
from kernel.gateway.auth import Authenticator, policy_for
from kernel.gateway.static_tokens import static_tokens_from_config
from kernel.protocol import NO_PRINCIPAL, AuthPolicy, Principal

OPEN = [AuthPolicy("/public", "unauthenticated"), AuthPolicy("/img", "user-cookie")]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/public", "unauthenticated"),
        ("/public/x/y", "unauthenticated"),
        ("/publicity", None),
        ("/img/a.png", "user-cookie"),
        ("/other", None),
    ],
)
def test_policies_match_by_path_segment_prefix(path: str, expected: str | None) -> None:
    assert policy_for(OPEN, path) == expected
    assert policy_for([AuthPolicy("/", "unauthenticated")], path) == "unauthenticated"


def _principal(result: Principal | Awaitable[Principal]) -> Principal:
    """What ``authenticate`` decided: at once for a token verified before, else once awaited."""
    if isinstance(result, Principal):
        return result

    async def wait() -> Principal:
        return await result

    return asyncio.run(wait())


class _Auth:
    """An ``Authenticator`` whose ``authenticate`` is awaited when it must be."""

    def __init__(self, auth: Authenticator) -> None:
        self.inner = auth

    def authenticate(self, *args: Any) -> Principal:
        return _principal(self.inner.authenticate(*args))


def _auth(**entry: object) -> _Auth:
    config = Config.from_dict(
        {
            "backend": {
                "auth": {
                    "externalAccess": [
                        {"type": "static", "options": {"token": "t0k3n-abcdef", "subject": "ci"}, **entry}
                    ]
                }
            }
        }
    )
    return _Auth(Authenticator([static_tokens_from_config(config)]))


def _bearer(token: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {token}".encode())]


def test_static_token_gives_a_service_principal_and_is_cached() -> None:
    auth = _auth()
    p = auth.authenticate("x", [], "/a", _bearer("t0k3n-abcdef"))
    assert (p.type, p.subject, p.access_restrictions) == ("service", "external:ci", None)
    assert auth.authenticate("x", [], "/a", _bearer("t0k3n-abcdef")) is p
    assert auth.inner.authenticate("x", [], "/a", _bearer("t0k3n-abcdef")) is p  # cached: answered at once
    with pytest.raises(AuthenticationError, match="Invalid credentials"):
        auth.authenticate("x", [], "/a", _bearer("t0k3n-abcdeX"))
    with pytest.raises(AuthenticationError, match="Missing credentials"):
        auth.authenticate("x", [], "/a", [])
    with pytest.raises(AuthenticationError):
        auth.authenticate("x", [], "/a", [(b"authorization", b"Basic dXNlcjpwdw==")])


def test_open_paths_take_no_or_stale_credentials() -> None:
    auth = _auth()
    assert auth.authenticate("x", OPEN, "/public/a", []) is NO_PRINCIPAL
    assert auth.authenticate("x", OPEN, "/public/a", _bearer("stale-token-1234")) is NO_PRINCIPAL
    assert auth.authenticate("x", OPEN, "/public/a", _bearer("t0k3n-abcdef")).subject == "external:ci"


def test_user_cookie_paths_read_the_cookie() -> None:
    auth = _auth()
    cookie = [(b"cookie", b"a=1; backstage-auth=t0k3n-abcdef")]  # the reference system's cookie name
    assert auth.authenticate("x", OPEN, "/img/a.png", cookie).subject == "external:ci"
    with pytest.raises(AuthenticationError):
        auth.authenticate("x", OPEN, "/private", cookie)  # cookies count only on user-cookie paths


def test_access_restrictions() -> None:
    auth = _auth(accessRestrictions=[{"plugin": "catalog"}])
    assert auth.authenticate("catalog", [], "/", _bearer("t0k3n-abcdef")).access_restrictions == ["catalog"]
    with pytest.raises(NotAllowedError, match="plugin 'scaffolder'"):
        auth.authenticate("scaffolder", [], "/", _bearer("t0k3n-abcdef"))


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"type": "static", "options": {"token": "short", "subject": "x"}}, "8\\+ characters"),
        ({"type": "static", "options": {"token": "long-enough-token"}}, "subject"),
        ({"options": {}}, "must be an object with a 'type'"),
        (
            {"type": "static", "options": {"token": "long-enough-token", "subject": "x"}, "accessRestrictions": ["x"]},
            "accessRestrictions",
        ),
    ],
)
def test_bad_external_access_config_names_the_entry(entry: dict[str, object], message: str) -> None:
    config = Config.from_dict({"backend": {"auth": {"externalAccess": [entry]}}})
    with pytest.raises(ConfigError, match=r"backend\.auth\.externalAccess\[0\]") as err:
        static_tokens_from_config(config)
    assert err.match(message)


def test_a_cached_token_is_answered_at_once_and_keeps_nothing_per_call() -> None:
    auth = _auth().inner
    headers = _bearer("t0k3n-abcdef")
    first = _principal(auth.authenticate("x", [], "/a", headers))
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for _ in range(10_000):
            assert auth.authenticate("x", [], "/a", headers) is first  # no awaitable, no new principal
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after - before < 1024, "memory kept per cached verification"

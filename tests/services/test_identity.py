"""The deprecated ``identity`` service through real kernels: the user of a token, its options, service callers.

User tokens come from a local issuer standing in for the ``auth`` plugin (``token_issuer``). One
kernel runs the default factory; another installs a package that overrides it with the reference
system's options (``issuer``, ``algorithms``), as an installation's ``identityServiceFactory({...})``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kernel.testing import KernelProcess, make_package
from tests import plugins
from tests.conftest import TOKEN, assert_error_shape, base_config
from tests.services.token_issuer import GROUPS, USER, Issuer

OVERRIDE = {"issuer": "https://id.example", "algorithms": ["ES256", "RS256"]}


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    found = Issuer()
    yield found
    found.close()


def _site(root: Path, override: bool) -> Path:
    make_package(
        root,
        "kernel-test-identified",
        {"test_identified": plugins.IDENTIFIED},
        {"identified": "test_identified:plugin"},
    )
    make_package(root, "kernel-test-caller", {"test_caller": plugins.CALLER}, {"caller": "test_caller:plugin"})
    if override:
        make_package(
            root,
            "kernel-test-identity-options",
            {"test_identity_options": plugins.IDENTITY_OPTIONS},
            {"identity-options": "test_identity_options"},
        )
    return root


def _served(issuer: Issuer, root: Path, override: bool) -> Iterator[httpx.Client]:
    config = base_config()
    config["discovery"] = {"endpoints": [{"target": f"http://127.0.0.1:{issuer.port}/api/auth", "plugins": ["auth"]}]}
    config["backend"]["database"] = {"connection": {"directory": str(root / "db")}}
    env = {"KERNEL_TEST_IDENTITY_OPTIONS": json.dumps(OVERRIDE)} if override else {}
    with (
        KernelProcess(config, paths=[_site(root, override)], env=env) as k,
        httpx.Client(base_url=k.url, timeout=20) as c,
    ):
        yield c


@pytest.fixture(scope="module")
def default(issuer: Issuer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    yield from _served(issuer, tmp_path_factory.mktemp("identity"), override=False)


@pytest.fixture(scope="module")
def overridden(issuer: Issuer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    yield from _served(issuer, tmp_path_factory.mktemp("identity-options"), override=True)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_user_token_gives_the_user_and_their_ownership(default: httpx.Client, issuer: Issuer) -> None:
    answer = default.get("/api/identified/me", headers=bearer(issuer.user_token()))
    assert answer.json() == {"type": "user", "userEntityRef": USER, "ownershipEntityRefs": GROUPS, "sameToken": True}


def test_no_authorization_header_is_no_identity(default: httpx.Client) -> None:
    assert default.get("/api/identified/open/me").json() == {"identity": None}


def test_a_service_caller_has_no_identity(default: httpx.Client) -> None:
    # the gateway lets the static token through (a service may call /me) ...
    answer = default.get("/api/identified/me", headers=bearer(TOKEN))
    # ... and the identity service, as the reference system's, knows only user tokens
    assert "not a user token" in str(assert_error_shape(answer, 401, "AuthenticationError")["error"])
    # another plugin calling as itself, with a plugin token the gateway verified
    called = default.get("/api/caller/call", params={"target": "identified", "path": "/me"}).json()
    assert called["error"] == "AuthenticationError", called


def test_forged_and_expired_tokens_are_refused(default: httpx.Client, issuer: Issuer) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    forged = issuer.user_token(key=ec.generate_private_key(ec.SECP256R1()))
    expired = issuer.user_token(exp=1_000_000_000)
    for token in (forged, expired):
        # on an open route the gateway lets a bad token pass as no caller: the identity service refuses it itself
        answer = default.get("/api/identified/open/me", headers=bearer(token))
        assert_error_shape(answer, 401, "AuthenticationError")


def test_the_default_takes_es256_only(default: httpx.Client, issuer: Issuer) -> None:
    answer = default.get("/api/identified/open/me", headers=bearer(issuer.user_token(alg="RS256")))
    assert "'RS256' is not one of ES256" in str(assert_error_shape(answer, 401, "AuthenticationError")["error"])
    # and checks no issuer
    assert default.get("/api/identified/me", headers=bearer(issuer.user_token(iss="anyone"))).status_code == 200


def test_a_package_overrides_the_issuer_and_the_algorithms(overridden: httpx.Client, issuer: Issuer) -> None:
    ours = issuer.user_token(iss=OVERRIDE["issuer"])
    assert overridden.get("/api/identified/me", headers=bearer(ours)).json()["userEntityRef"] == USER
    rs256 = issuer.user_token(iss=OVERRIDE["issuer"], alg="RS256")
    assert overridden.get("/api/identified/open/me", headers=bearer(rs256)).json()["userEntityRef"] == USER
    # a token of another issuer passes the gateway (which checks no issuer) but not this identity service
    other = overridden.get("/api/identified/me", headers=bearer(issuer.user_token(iss="test")))
    assert "issuer" in str(assert_error_shape(other, 401, "AuthenticationError")["error"]).lower()

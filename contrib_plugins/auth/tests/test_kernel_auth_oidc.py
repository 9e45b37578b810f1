"""The ``oidc-token`` provider in a real kernel, against an issuer whose JWKS this test serves on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from auth_support import AUDIENCE, ISSUER, Issuer, jwks_of, start_kernel, verify_with_jwks

from kernel.testing import KernelProcess

EXCHANGE = "/api/auth/oidc-token/exchange"


@pytest.fixture(scope="module")
def kernel(issuer: Issuer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelProcess]:
    issuer.add_key("rsa")
    provider = {"issuer": ISSUER, "jwksUrl": issuer.url, "audience": AUDIENCE, "ownershipClaim": "groups"}
    # production: the guest provider is off, the oidc-token provider is not tied to development
    k = start_kernel(
        tmp_path_factory.mktemp("oidc"), {"auth": {"providers": {"oidcToken": provider}}}, env="production"
    )
    yield k
    k.stop()


def _exchange(kernel: KernelProcess, token: str) -> httpx.Response:
    return httpx.post(f"{kernel.url}{EXCHANGE}", json={"token": token}, timeout=15)


def _refused(resp: httpx.Response, word: str) -> None:
    assert resp.status_code == 401, resp.text
    body = resp.json()
    assert body["error"]["name"] == "AuthenticationError" and word in body["error"]["message"], body
    assert body["response"] == {"statusCode": 401}


def test_a_good_id_token_becomes_a_user_token(kernel: KernelProcess, issuer: Issuer) -> None:
    kid = next(iter(issuer.keys))
    resp = _exchange(kernel, issuer.id_token(kid, groups=["team-a", "group:ops/sre"]))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    refs = ["user:default/jane.doe", "group:default/team-a", "group:ops/sre"]
    assert body["backstageIdentity"]["identity"] == {
        "type": "user",
        "userEntityRef": "user:default/jane.doe",
        "ownershipEntityRefs": refs,
    }
    assert body["profile"] == {"email": "jane.doe@example.com", "displayName": "Jane Doe"}
    claims = verify_with_jwks(
        body["backstageIdentity"]["token"], jwks_of(kernel), audience="backstage", issuer=f"{kernel.url}/api/auth"
    )
    assert (claims["sub"], claims["ent"]) == ("user:default/jane.doe", refs)
    assert httpx.get(f"{kernel.url}/api/auth/guest/refresh", timeout=10).status_code == 403


def test_a_token_of_another_issuer_is_refused_without_asking_the_issuer(kernel: KernelProcess, issuer: Issuer) -> None:
    kid = next(iter(issuer.keys))
    hits = issuer.hits
    _refused(_exchange(kernel, issuer.id_token(kid, iss="https://other-idp.example.test")), "issuer")
    assert issuer.hits == hits


def test_an_expired_token_is_refused(kernel: KernelProcess, issuer: Issuer) -> None:
    now = int(time.time())
    _refused(_exchange(kernel, issuer.id_token(next(iter(issuer.keys)), iat=now - 900, exp=now - 600)), "expired")


def test_a_bad_signature_is_refused(kernel: KernelProcess, issuer: Issuer) -> None:
    kid = next(iter(issuer.keys))
    impostor = issuer.keys[issuer.add_key("rsa")][0]  # a key the token's kid does not name
    _refused(_exchange(kernel, issuer.id_token(kid, key=impostor)), "signature")
    head, body, sig = issuer.id_token(kid).split(".")
    _refused(_exchange(kernel, f"{head}.{body}.{sig[:-6]}AAAAAA"), "signature")


def test_a_token_for_another_audience_is_refused(kernel: KernelProcess, issuer: Issuer) -> None:
    _refused(_exchange(kernel, issuer.id_token(next(iter(issuer.keys)), aud="another-app")), "audience")


def test_a_token_without_the_claims_the_mapping_needs_is_refused(kernel: KernelProcess, issuer: Issuer) -> None:
    _refused(_exchange(kernel, issuer.id_token(next(iter(issuer.keys)), email=None)), "email")


def test_a_request_without_a_token_is_an_input_error(kernel: KernelProcess) -> None:
    for kwargs in ({"content": b"not json"}, {"json": {"id_token": "x"}}, {"json": ["x"]}):
        resp = httpx.post(f"{kernel.url}{EXCHANGE}", timeout=10, **kwargs)  # type: ignore[arg-type]
        assert resp.status_code == 400 and resp.json()["error"]["name"] == "InputError", resp.text

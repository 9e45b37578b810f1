"""The auth plugin in a real kernel: guest tokens, their format, JWKS, OpenID configuration, userinfo."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from auth_support import guest_token, jwks_of, start_kernel, verify_with_jwks
from kernel_auth import limited_token_of
from kernel_auth.tokens import b64url_decode

from kernel.testing import KernelProcess

BASE_URL = "https://portal.example.test"
ISSUER = f"{BASE_URL}/api/auth"
GUEST = "user:development/guest"


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelProcess]:
    """A kernel in development (``KERNEL_ENV=development``) whose external base URL is ``BASE_URL``."""
    k = start_kernel(tmp_path_factory.mktemp("dev"), {"backend": {"baseUrl": BASE_URL}})
    yield k
    k.stop()


def _error(resp: httpx.Response, status: int, name: str) -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["error"]["name"] == name
    assert body["response"] == {"statusCode": status}
    assert body["request"]["url"] == resp.request.url.raw_path.decode()
    message: str = body["error"]["message"]
    return message


def test_guest_refresh_returns_a_backstage_identity_with_a_user_token(dev: KernelProcess) -> None:
    before = int(time.time())
    body = guest_token(dev)
    assert set(body) == {"profile", "providerInfo", "backstageIdentity"}
    identity = body["backstageIdentity"]
    assert identity["identity"] == {"type": "user", "userEntityRef": GUEST, "ownershipEntityRefs": [GUEST]}
    assert 3590 <= identity["expiresInSeconds"] <= 3600
    token = identity["token"]
    header = json.loads(b64url_decode(token.split(".")[0]))
    assert list(header) == ["typ", "alg", "kid"]
    assert (header["typ"], header["alg"]) == ("vnd.backstage.user", "ES256")
    jwks = jwks_of(dev)
    published = {k["kid"]: k for k in jwks["keys"]}
    assert {"kid", "alg", "use", "kty", "crv", "x", "y"} <= set(published[header["kid"]])
    assert published[header["kid"]]["use"] == "sig" and "d" not in published[header["kid"]]
    claims = verify_with_jwks(token, jwks, audience="backstage", issuer=ISSUER)
    assert list(claims) == ["iss", "sub", "ent", "aud", "iat", "exp", "uip"]
    assert (claims["sub"], claims["ent"], claims["aud"]) == (GUEST, [GUEST], "backstage")
    assert before <= claims["iat"] <= time.time() and claims["exp"] - claims["iat"] == 3600
    post = httpx.post(f"{dev.url}/api/auth/guest/refresh", timeout=10)
    assert post.status_code == 200 and post.json()["backstageIdentity"]["identity"]["userEntityRef"] == GUEST


def test_the_limited_token_is_rebuilt_from_the_full_token_and_verifies(dev: KernelProcess) -> None:
    token = guest_token(dev)["backstageIdentity"]["token"]
    limited = limited_token_of(token)
    full_header = jwt.get_unverified_header(token)
    head, payload, signature = limited.split(".")
    expected_head = {"typ": "vnd.backstage.limited-user", "alg": "ES256", "kid": full_header["kid"]}
    assert b64url_decode(head) == json.dumps(expected_head, separators=(",", ":")).encode()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert b64url_decode(payload) == f'{{"sub":"{GUEST}","iat":{claims["iat"]},"exp":{claims["exp"]}}}'.encode()
    assert signature == claims["uip"]
    assert verify_with_jwks(limited, jwks_of(dev)) == {"sub": GUEST, "iat": claims["iat"], "exp": claims["exp"]}


def test_openid_configuration_names_the_external_issuer_and_its_jwks(dev: KernelProcess) -> None:
    resp = httpx.get(f"{dev.url}/api/auth/.well-known/openid-configuration", timeout=10)
    assert resp.status_code == 200, resp.text
    config = resp.json()
    assert config["issuer"] == ISSUER
    assert config["jwks_uri"] == f"{ISSUER}/.well-known/jwks.json"
    assert config["id_token_signing_alg_values_supported"] == ["ES256"]
    assert config["userinfo_endpoint"] == f"{ISSUER}/v1/userinfo"


def test_userinfo_answers_for_a_valid_user_token_only(dev: KernelProcess) -> None:
    token = guest_token(dev)["backstageIdentity"]["token"]
    resp = httpx.get(f"{dev.url}/api/auth/v1/userinfo", headers={"authorization": f"Bearer {token}"}, timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"sub": GUEST, "ent": [GUEST]}
    head, body, sig = token.split(".")
    tampered = f"{head}.{body}.{sig[:-4]}AAAA"
    for headers in (
        {},
        {"authorization": f"Bearer {tampered}"},
        {"authorization": f"Bearer {limited_token_of(token)}"},
    ):
        resp = httpx.get(f"{dev.url}/api/auth/v1/userinfo", headers=headers, timeout=10)
        _error(resp, 401, "AuthenticationError")


def test_oidc_token_exchange_is_404_until_configured(dev: KernelProcess) -> None:
    resp = httpx.post(f"{dev.url}/api/auth/oidc-token/exchange", json={"token": "x"}, timeout=10)
    assert "auth.providers.oidcToken" in _error(resp, 404, "NotFoundError")


def test_guest_is_refused_outside_development(tmp_path: Path) -> None:
    k = start_kernel(tmp_path, env="production")
    try:
        for method in ("GET", "POST"):
            resp = httpx.request(method, f"{k.url}/api/auth/guest/refresh", timeout=10)
            message = _error(resp, 403, "NotAllowedError")
            assert "auth.providers.guest.dangerouslyAllowOutsideDevelopment" in message
            assert "stack" not in resp.json()["error"]
        assert jwks_of(k)["keys"]  # the rest of the plugin works
    finally:
        k.stop()


def test_guest_outside_development_when_dangerously_allowed_with_configured_refs(tmp_path: Path) -> None:
    guest: dict[str, Any] = {
        "dangerouslyAllowOutsideDevelopment": True,
        "userEntityRef": "user:default/demo",
        "ownershipEntityRefs": ["group:default/team-a"],
    }
    k = start_kernel(
        tmp_path,
        {"auth": {"providers": {"guest": guest}, "backstageTokenExpiration": {"minutes": 20}}},
        env="production",
    )
    try:
        identity = guest_token(k)["backstageIdentity"]
        refs = ["user:default/demo", "group:default/team-a"]  # the user's own ref is always included
        assert identity["identity"] == {
            "type": "user",
            "userEntityRef": "user:default/demo",
            "ownershipEntityRefs": refs,
        }
        claims = verify_with_jwks(identity["token"], jwks_of(k), audience="backstage", issuer=f"{k.url}/api/auth")
        assert (claims["sub"], claims["ent"], claims["exp"] - claims["iat"]) == ("user:default/demo", refs, 1200)
    finally:
        k.stop()

"""The auth plugin in an in-process test backend (``kernel.testing``): its routes behind the real gateway,
its keys in a fresh test database on each engine, discovery and the environment mocked."""

from __future__ import annotations

from collections.abc import AsyncIterator

import jwt
import pytest
from kernel_auth import plugin

from kernel.testing import TestBackend, TestDatabase, mock_credentials, mock_services, start_test_backend

PORTAL = "https://portal.example.test/api/auth"
GUEST = "user:development/guest"


@pytest.fixture
async def backend(test_database: TestDatabase) -> AsyncIterator[TestBackend]:
    """The auth plugin; its database a fresh one (``sqlite`` and ``postgres``), its external URL ``PORTAL``."""
    discovery = mock_services.discovery.mock(get_external_base_url=PORTAL)
    async with start_test_backend([plugin], services=[test_database, discovery]) as b:
        yield b


async def guest(backend: TestBackend) -> str:
    resp = await backend.client.post("/api/auth/guest/refresh")
    assert resp.status_code == 200, resp.text
    token: str = resp.json()["backstageIdentity"]["token"]
    return token


async def test_guest_is_refused_outside_development(backend: TestBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KERNEL_ENV", raising=False)
    resp = await backend.client.get("/api/auth/guest/refresh")
    assert resp.status_code == 403
    assert resp.json()["error"]["name"] == "NotAllowedError"
    assert "dangerouslyAllowOutsideDevelopment" in resp.json()["error"]["message"]


async def test_a_guest_token_verifies_against_the_published_keys(
    backend: TestBackend, test_database: TestDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KERNEL_ENV", "development")
    token = await guest(backend)
    jwks = (await backend.client.get("/api/auth/.well-known/jwks.json")).json()
    kid = jwt.get_unverified_header(token)["kid"]
    key = jwt.PyJWKSet.from_dict(jwks)[kid]
    claims = jwt.decode(token, key.key, algorithms=["ES256"], audience="backstage", issuer=PORTAL)
    assert (claims["sub"], claims["ent"]) == (GUEST, [GUEST])
    db = await test_database.client()  # the key the plugin published, in the test's database
    assert await db.fetch_val("SELECT count(*) FROM auth_signing_keys WHERE kid = $1", kid) == 1


async def test_userinfo_takes_user_tokens_of_the_plugin_only(
    backend: TestBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KERNEL_ENV", "development")
    token = await guest(backend)
    ok = await backend.client.get("/api/auth/v1/userinfo", headers={"Authorization": f"Bearer {token}"})
    assert ok.json() == {"sub": GUEST, "ent": [GUEST]}
    for headers in ({}, mock_credentials.user.header()):  # the route is open: the plugin itself decides
        refused = await backend.client.get("/api/auth/v1/userinfo", headers=headers)
        assert refused.status_code == 401 and refused.json()["error"]["name"] == "AuthenticationError"


async def test_the_openid_configuration_names_the_external_issuer(backend: TestBackend) -> None:
    config = (await backend.client.get("/api/auth/.well-known/openid-configuration")).json()
    assert (config["issuer"], config["jwks_uri"]) == (PORTAL, f"{PORTAL}/.well-known/jwks.json")
    missing = await backend.client.post("/api/auth/oidc-token/exchange", json={"token": "x"})
    assert missing.status_code == 404 and "auth.providers.oidcToken" in missing.json()["error"]["message"]

"""Each mock credential through a real in-process test backend: 401/403/200, and the principal the plugin sees."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from kernel.api import AuthenticationError, Credentials, Principal
from kernel.testing import MockCredentials, TestBackend, mock_credentials, start_test_backend
from kernel.testing.credentials import MockCredentialVerifier, verify_mock_token
from tests.conftest import assert_error_shape
from tests.testing import notes

JANE = "user:default/jane"


@pytest.fixture
async def backend() -> AsyncIterator[TestBackend]:
    async with start_test_backend([notes.plugin]) as b:
        yield b


async def whoami(backend: TestBackend, path: str = "/whoami", **kw: object) -> httpx.Response:
    return await backend.client.get(f"/api/notes{path}", **kw)  # type: ignore[arg-type]


async def test_no_credentials_is_401_on_a_protected_path_and_none_on_an_open_one(backend: TestBackend) -> None:
    msg = assert_error_shape(await whoami(backend), 401, "AuthenticationError")["error"]
    assert msg == {"name": "AuthenticationError", "message": "Missing credentials"}
    resp = await whoami(backend, "/public/whoami")
    assert resp.status_code == 200 and resp.json()["type"] == "none"


async def test_none_header_is_missing_credentials(backend: TestBackend) -> None:
    header = mock_credentials.none.header()
    assert header == {"Authorization": "Bearer mock-none-token"} == mock_credentials.none().header()
    assert_error_shape(await whoami(backend, headers=header), 401, "AuthenticationError")
    open_path = await whoami(backend, "/public/whoami", headers=header)
    assert open_path.json()["type"] == "none"
    assert mock_credentials.none().principal == Principal()


async def test_the_default_user(backend: TestBackend) -> None:
    assert mock_credentials.user.token() == "mock-user-token"
    resp = await whoami(backend, headers=mock_credentials.user.header())
    assert resp.status_code == 200
    assert resp.json() == {
        "type": "user",
        "subject": "user:default/mock",
        "ownership_refs": ["user:default/mock"],
        "access_restrictions": None,
        "actor": "",
    }
    assert mock_credentials.user().principal == Principal(
        "user", "user:default/mock", ownership_refs=["user:default/mock"]
    )


async def test_a_named_user_with_its_groups(backend: TestBackend) -> None:
    jane = mock_credentials.user(JANE, ownership_refs=[JANE, "group:default/team-a"])
    assert jane.token().startswith("mock-user-token:")
    body = (await whoami(backend, headers=jane.header())).json()
    assert (body["subject"], body["ownership_refs"]) == (JANE, [JANE, "group:default/team-a"])
    info = (await backend.client.get("/api/notes/users-only", headers=jane.header())).json()
    assert info == {"user": JANE, "owns": [JANE, "group:default/team-a"]}
    with pytest.raises(TypeError, match="expected <kind>:<namespace>/<name>"):
        mock_credentials.user("jane")


async def test_a_limited_user_only_where_user_cookies_are_allowed(backend: TestBackend) -> None:
    limited = mock_credentials.limited_user(JANE)
    assert limited.token().startswith("mock-limited-user-token:")
    assert_error_shape(await whoami(backend, headers=limited.header()), 401, "AuthenticationError")
    for headers in (limited.cookie(), limited.header(), mock_credentials.limited_user.cookie(JANE)):
        resp = await whoami(backend, "/cookie/whoami", headers=headers)
        assert resp.status_code == 200, resp.text
        assert resp.json()["subject"] == JANE and resp.json()["credentials"] == JANE
        assert resp.json()["ownership_refs"] == []  # a limited token carries no ownership claims
    refused = await whoami(backend, "/cookie/whoami", headers=mock_credentials.limited_user.invalid_cookie())
    assert_error_shape(refused, 401, "AuthenticationError")


async def test_the_default_service_is_403_where_users_only(backend: TestBackend) -> None:
    service = mock_credentials.service()
    assert service.token() == "mock-service-token" == mock_credentials.service.token()
    body = (await whoami(backend, headers=service.header())).json()
    assert (body["type"], body["subject"]) == ("service", "external:test-service")
    msg = assert_error_shape(
        await backend.client.get("/api/notes/users-only", headers=service.header()), 403, "NotAllowedError"
    )
    assert msg["error"]["message"] == "This endpoint does not allow 'service' credentials"


async def test_a_service_with_access_restrictions(backend: TestBackend) -> None:
    allowed = mock_credentials.service("external:ci", ["notes"])
    body = (await whoami(backend, headers=allowed.header())).json()
    assert (body["subject"], body["access_restrictions"]) == ("external:ci", ["notes"])
    elsewhere = mock_credentials.service("external:ci", [{"plugin": "catalog", "permission": "catalog.entity.read"}])
    assert elsewhere.principal.access_restrictions == ["catalog"]
    assert elsewhere.principal.permission_restrictions is not None
    msg = assert_error_shape(await whoami(backend, headers=elsewhere.header()), 403, "NotAllowedError")
    assert msg["error"]["message"] == "This token may not access plugin 'notes'"


async def test_a_plugin_token_reaches_its_target_only(backend: TestBackend) -> None:
    ours = mock_credentials.service("plugin:catalog", target_plugin_id="notes")
    assert (await whoami(backend, headers=ours.header())).json()["subject"] == "plugin:catalog"
    theirs = mock_credentials.service("plugin:catalog", target_plugin_id="search")
    msg = assert_error_shape(await whoami(backend, headers=theirs.header()), 401, "AuthenticationError")
    assert msg["error"]["message"] == "This token is for plugin 'search', not 'notes'"
    obo = mock_credentials.service("plugin:catalog", target_plugin_id="notes", on_behalf_of=mock_credentials.user(JANE))
    body = (await whoami(backend, headers=obo.header())).json()
    assert (body["type"], body["subject"], body["actor"]) == ("user", JANE, "plugin:catalog")


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        (mock_credentials.user, "User token is invalid"),
        (mock_credentials.service, "Service token is invalid"),
    ],
)
async def test_invalid_variants_are_401(backend: TestBackend, kind: object, message: str) -> None:
    made: MockCredentials = kind()  # type: ignore[operator]
    for headers in (made.invalid_header(), kind.invalid_header()):  # type: ignore[attr-defined]
        msg = assert_error_shape(await whoami(backend, headers=headers), 401, "AuthenticationError")
        assert msg["error"]["message"] == message
        assert (await whoami(backend, "/public/whoami", headers=headers)).json()["type"] == "none"  # ignored there
    assert_error_shape(
        await whoami(backend, headers={"Authorization": "Bearer mock-nonsense"}), 401, "AuthenticationError"
    )


def test_verify_mock_token_leaves_other_tokens_to_the_other_verifiers() -> None:
    assert verify_mock_token("s3cret-static-token") is None
    assert MockCredentialVerifier().verify("eyJhbGciOi.x.y") is None
    verified = verify_mock_token(mock_credentials.limited_user().token())
    assert verified is not None and verified.limited
    with pytest.raises(AuthenticationError, match="Malformed mock token"):
        verify_mock_token("mock-user-token:{not json")


def test_credentials_for_unit_tests_of_services() -> None:
    creds = mock_credentials.user(JANE).credentials
    assert isinstance(creds, Credentials)
    assert creds.principal.subject == JANE and creds.token.startswith("mock-user-token:")


async def test_static_tokens_of_the_config_work_beside_mock_tokens() -> None:
    config = {
        "backend": {
            "auth": {"externalAccess": [{"type": "static", "options": {"token": "a-static-token-1", "subject": "ci"}}]}
        }
    }
    async with start_test_backend([notes.plugin], config=config) as backend:
        body = (await whoami(backend, headers={"Authorization": "Bearer a-static-token-1"})).json()
        assert (body["type"], body["subject"]) == ("service", "external:ci")
        assert (await whoami(backend, headers=mock_credentials.user.header())).status_code == 200

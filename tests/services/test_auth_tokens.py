"""Plugin and user tokens through a real gateway and real workers: issued, verified, refused.

Plugins ``caller`` and ``callee`` call each other with plugin tokens. User tokens are signed
here with a key served by a local JWKS server standing in for the ``auth`` plugin (discovery
sends ``auth`` there), so every kind of bad token can be made.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from kernel.testing import KernelProcess, free_port, make_package, wait_for
from kernel_services.auth.tokens import LIMITED_USER_TYP, PLUGIN_TYP, USER_TYP, b64encode
from tests import plugins
from tests.conftest import TOKEN, assert_error_shape, base_config
from tests.services.token_issuer import GROUPS, USER, Issuer, sign


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    found = Issuer()
    yield found
    found.close()


@pytest.fixture(scope="module")
def kernel(site: Path, issuer: Issuer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelProcess]:
    root = tmp_path_factory.mktemp("callers")
    make_package(root, "kernel-test-caller", {"test_caller": plugins.CALLER}, {"caller": "test_caller:plugin"})
    make_package(root, "kernel-test-callee", {"test_callee": plugins.CALLEE}, {"callee": "test_callee:plugin"})
    config = base_config()
    config["discovery"] = {"endpoints": [{"target": f"http://127.0.0.1:{issuer.port}/api/auth", "plugins": ["auth"]}]}
    config["backend"]["database"] = {"connection": {"directory": str(tmp_path_factory.mktemp("db"))}}
    k = KernelProcess(config, paths=[site, root]).start()
    yield k
    k.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- plugin to plugin ------------------------------------------------------------------------------


def test_a_plugin_calls_another_as_itself(client: httpx.Client) -> None:
    got = client.get("/api/caller/call", params={"target": "callee", "path": "/whoami"}).json()
    assert got == {"status": 200, "body": {"type": "service", "subject": "plugin:caller", "actor": ""}}
    got = client.get("/api/caller/call", params={"target": "callee", "path": "/services-only"}).json()
    assert got == {"status": 200, "body": {"subject": "plugin:caller"}}


def test_an_error_of_the_other_plugin_arrives_as_the_matching_kernel_error(client: httpx.Client) -> None:
    got = client.get("/api/caller/call", params={"target": "callee", "path": "/missing"}).json()
    assert got["error"] == "NotFoundError" and "no such thing as that" in got["message"]
    got = client.get("/api/caller/call", params={"target": "callee", "path": "/nowhere"}).json()
    assert got["error"] == "NotFoundError"


def test_the_jwks_of_every_plugin_is_open_and_verifies_its_tokens(client: httpx.Client) -> None:
    token = client.get("/api/caller/token", params={"target": "callee"}).text
    jwks = client.get("/api/caller/.backstage/auth/v1/jwks.json").json()
    header = jwt.get_unverified_header(token)
    assert header["typ"] == PLUGIN_TYP and header["alg"] == "ES256"
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    claims = jwt.decode(token, jwt.PyJWK.from_dict(key), algorithms=["ES256"], audience="callee")
    assert claims["sub"] == "caller" and claims["aud"] == "callee"
    assert 0 < claims["exp"] - claims["iat"] <= 3600


def test_a_token_for_one_plugin_is_refused_by_another(client: httpx.Client) -> None:
    token = client.get("/api/caller/token", params={"target": "callee"}).text
    assert client.get("/api/callee/whoami", headers=bearer(token)).json()["subject"] == "plugin:caller"
    refused = assert_error_shape(client.get("/api/other/whoami", headers=bearer(token)), 401, "AuthenticationError")
    assert "for plugin 'callee'" in str(refused["error"])


@pytest.mark.parametrize("tamper", ["signature", "kid", "alg-none", "typ-user", "foreign-key"])
def test_forged_plugin_tokens_are_refused(client: httpx.Client, tamper: str) -> None:
    token = client.get("/api/caller/token", params={"target": "callee"}).text
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    head, body, signature = token.split(".")
    if tamper == "signature":
        forged = f"{head}.{body}.{signature[:-4]}{'AAAA' if signature[-4:] != 'AAAA' else 'BBBB'}"
    elif tamper == "kid":
        forged = f"{b64encode(json.dumps({**header, 'kid': 'not-a-key'}).encode())}.{body}.{signature}"
    elif tamper == "alg-none":
        forged = f"{b64encode(json.dumps({**header, 'alg': 'none'}).encode())}.{body}."
    elif tamper == "typ-user":
        forged = f"{b64encode(json.dumps({**header, 'typ': USER_TYP}).encode())}.{body}.{signature}"
    else:  # the right kid and claims, signed by another key
        forged = sign(header, claims, ec.generate_private_key(ec.SECP256R1()))
    assert_error_shape(client.get("/api/callee/whoami", headers=bearer(forged)), 401, "AuthenticationError")


# -- users -------------------------------------------------------------------------------------------


def test_a_user_token_reaches_plugins_with_the_users_identity(client: httpx.Client, issuer: Issuer) -> None:
    token = issuer.user_token()
    got = client.get("/api/callee/whoami", headers=bearer(token)).json()
    assert got == {"type": "user", "subject": USER, "actor": "", "ownership": GROUPS}


def test_a_plugin_calls_another_on_behalf_of_the_user(client: httpx.Client, issuer: Issuer) -> None:
    got = client.get(
        "/api/caller/call-as-user", params={"target": "callee", "path": "/whoami"}, headers=bearer(issuer.user_token())
    ).json()
    # the user, as seen through the caller; a limited token carries no ownership claims
    assert got == {"type": "user", "subject": USER, "actor": "plugin:caller", "ownership": [USER]}


def test_a_user_token_where_only_services_are_allowed_is_403(client: httpx.Client, issuer: Issuer) -> None:
    answer = client.get("/api/callee/services-only", headers=bearer(issuer.user_token()))
    assert_error_shape(answer, 403, "NotAllowedError")
    assert client.get("/api/callee/services-only", headers=bearer(TOKEN)).json() == {"subject": "external:ci-bot"}


def test_bad_user_tokens_are_refused(client: httpx.Client, issuer: Issuer) -> None:
    expired = issuer.user_token(exp=time.time() - 120)
    unknown_issuer = issuer.user_token(key=ec.generate_private_key(ec.SECP256R1()), kid="someone-else")
    forged = issuer.user_token(key=ec.generate_private_key(ec.SECP256R1()))  # our kid, another key
    for token in (expired, unknown_issuer, forged):
        assert_error_shape(client.get("/api/callee/whoami", headers=bearer(token)), 401, "AuthenticationError")
    # a limited token is only for paths that take user cookies
    limited = client.get("/api/callee/whoami", headers=bearer(issuer.limited_token()))
    assert "limited user token" in str(assert_error_shape(limited, 401, "AuthenticationError")["error"])


def test_an_unreachable_user_token_issuer_gives_401_at_once(site: Path, issuer: Issuer) -> None:
    config = base_config()
    closed = free_port()  # nothing listens there
    config["discovery"] = {"endpoints": [{"target": f"http://127.0.0.1:{closed}/api/auth", "plugins": ["auth"]}]}
    # the client's own timeout is longer than the key fetch's: a hang would fail here, not answer 401
    with KernelProcess(config, paths=[site]) as k, httpx.Client(base_url=k.url, timeout=20) as c:
        answer = c.get("/api/echo/private/whoami", headers=bearer(issuer.user_token()))
        assert_error_shape(answer, 401, "AuthenticationError")
        assert "Cannot verify the token" in answer.json()["error"]["message"]


def test_a_user_exchanges_the_token_for_a_cookie_that_opens_only_cookie_paths(
    client: httpx.Client, issuer: Issuer
) -> None:
    issued = client.get("/api/callee/.backstage/auth/v1/cookie", headers=bearer(issuer.user_token()))
    assert issued.status_code == 200, issued.text
    assert set(issued.json()) == {"expiresAt"}
    set_cookie = issued.headers["set-cookie"]
    assert set_cookie.startswith("backstage-auth=") and "HttpOnly" in set_cookie and "Path=/api/callee" in set_cookie
    cookie = {"Cookie": set_cookie.split(";", 1)[0]}
    limited = cookie["Cookie"].split("=", 1)[1]
    assert jwt.get_unverified_header(limited)["typ"] == LIMITED_USER_TYP
    assert client.get("/api/callee/picture", headers=cookie).json() == {"picture-of": USER}
    # nowhere else does the cookie, or the limited token in it, pass
    assert_error_shape(client.get("/api/callee/whoami", headers=cookie), 401, "AuthenticationError")
    assert_error_shape(client.get("/api/callee/whoami", headers=bearer(limited)), 401, "AuthenticationError")
    # the cookie refreshes itself, and DELETE removes it
    assert client.get("/api/callee/.backstage/auth/v1/cookie", headers=cookie).status_code == 200
    removed = client.delete("/api/callee/.backstage/auth/v1/cookie", headers=cookie)
    assert removed.status_code == 204 and 'backstage-auth=""' in removed.headers["set-cookie"]
    assert_error_shape(client.get("/api/callee/.backstage/auth/v1/cookie"), 401, "AuthenticationError")


def _token_claiming(caller: str, target: str) -> str:
    """A plugin token that says it comes from ``caller``, signed by a key nobody published."""
    now = int(time.time())
    claims = {"sub": caller, "aud": target, "iat": now, "exp": now + 600}
    return sign({"typ": PLUGIN_TYP, "alg": "ES256", "kid": "k1"}, claims, ec.generate_private_key(ec.SECP256R1()))


def test_a_token_of_a_plugin_this_kernel_does_not_have_is_401(client: httpx.Client) -> None:
    answer = client.get("/api/callee/whoami", headers=bearer(_token_claiming("ghost", "callee")))
    assert "Cannot verify the token" in str(assert_error_shape(answer, 401, "AuthenticationError")["error"])


#: a plugin whose init outlasts the test: it stays "starting" throughout
STARTING = """
import asyncio
from kernel.api import core_services, create_plugin

plugin = create_plugin("starting")


@plugin.init(router=core_services.http_router)
async def init(router):
    await asyncio.sleep(600)
"""


def test_a_token_of_a_plugin_still_starting_is_503(site: Path, tmp_path: Path) -> None:
    make_package(tmp_path, "kernel-test-starting", {"test_starting": STARTING}, {"starting": "test_starting:plugin"})
    config = base_config()
    config["backend"]["workers"]["startTimeout"] = 600
    k = KernelProcess(config, paths=[site, tmp_path]).start(wait=False)
    try:

        def echo_up_and_plugin_starting() -> bool:
            not_ready = k.readiness()[1].get("plugins", {})
            return not_ready.get("starting") == "starting" and "echo" not in not_ready

        wait_for(
            echo_up_and_plugin_starting,
            30,
            "echo never came up beside the starting plugin",
            ignore=(OSError, ValueError),
        )
        with httpx.Client(base_url=k.url, timeout=20) as c:
            answer = c.get("/api/echo/private/whoami", headers=bearer(_token_claiming("starting", "echo")))
        # the keys of one of our own plugins are not there yet: try again, rather than "invalid"
        message = assert_error_shape(answer, 503, "ServiceUnavailableError")["error"]
        assert "not available yet" in str(message)
    finally:
        k.stop()

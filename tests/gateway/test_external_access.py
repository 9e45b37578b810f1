"""External access of type ``legacy`` and ``jwks`` (services/auth/external.py), and access restrictions.

Through the production gateway in the test's process (``start_test_backend``: the token system's
verifiers, in the gateway, as ``kernel serve`` composes it), with key sets served from this process on
127.0.0.1; and the principals the verifiers build, checked directly.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from kernel.config import Config, ConfigError
from kernel.protocol import PermissionRestriction, Principal
from kernel.testing import TestBackend, free_port, start_test_backend
from kernel_services.auth.external import JwksTokens, LegacyTokens, external_verifiers
from tests import plugins
from tests.conftest import TOKEN, assert_error_shape, base_config, fixture_plugin

SECRET = base64.b64encode(b"legacy-secret-of-32-bytes-length").decode()
RESTRICTED_SECRET = base64.urlsafe_b64encode(b"another-secret-for-other-plugins").decode()
UNKNOWN_SECRET = base64.b64encode(b"a-secret-nobody-has-configured!!").decode()
ISSUER, RESTRICTED_ISSUER = "https://idp.example", "https://restricted.example"
DOWN_ISSUER, SLOW_ISSUER = "https://down.example", "https://slow.example"
AUDIENCE = "kernel-api"

KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())


def _jwk(private: ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    jwk: dict[str, Any] = jwt.algorithms.ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "alg": "ES256", "use": "sig"}


class KeyServer:
    """``{"keys": [...]}`` at ``url``, served from a thread, each answer ``delay`` seconds late."""

    def __init__(self, keys: list[dict[str, Any]], delay: float = 0.0) -> None:
        self.keys, self.delay, self.requests = keys, delay, 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests += 1
                time.sleep(owner.delay)
                body = json.dumps({"keys": owner.keys}).encode()
                try:
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the caller gave up waiting

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/jwks.json"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def keys() -> Iterator[KeyServer]:
    server = KeyServer([_jwk(KEY, "k1")])
    yield server
    server.close()


@pytest.fixture(scope="module")
def slow_keys() -> Iterator[KeyServer]:
    server = KeyServer([_jwk(KEY, "k1")], delay=10)  # far beyond the entry's timeoutSeconds
    yield server
    server.close()


# ---------------------------------------------------------------------------- tokens


def legacy_token(secret: str = SECRET, headers: dict[str, Any] | None = None, **claims: Any) -> str:
    payload = {"sub": "backstage-server", "exp": int(time.time()) + 3600, **claims}
    key = base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
        return jwt.encode({k: v for k, v in payload.items() if v is not None}, key, "HS256", headers=headers)


def idp_token(key: ec.EllipticCurvePrivateKey = KEY, headers: dict[str, Any] | None = None, **claims: Any) -> str:
    payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": int(time.time()) + 600, **claims}
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, key, "ES256", headers={"kid": "k1", **(headers or {})})


def unsigned(**claims: Any) -> str:
    payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "backstage-server", "exp": int(time.time()) + 600, **claims}
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, None, "none")


def tampered(token: str, **header: Any) -> str:
    """``token`` with its header changed (the signature left as it was)."""
    head, payload, signature = token.split(".")
    old = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    new = base64.urlsafe_b64encode(json.dumps({**old, **header}).encode()).rstrip(b"=").decode()
    return f"{new}.{payload}.{signature}"


# ---------------------------------------------------------------------------- behind the gateway


def external_access(keys_url: str, slow_url: str, down_url: str) -> list[dict[str, Any]]:
    return [
        {"type": "legacy", "options": {"secret": SECRET, "subject": "legacy-ci"}},
        {
            "type": "legacy",
            "options": {"secret": RESTRICTED_SECRET, "subject": "legacy-other"},
            "accessRestrictions": [
                {"plugin": "other", "permission": "catalog.entity.read", "permissionAttribute": {"action": "read"}}
            ],
        },
        {
            "type": "jwks",
            "options": {
                "url": keys_url,
                "issuer": ISSUER,
                "audience": AUDIENCE,
                "algorithm": "ES256",
                "subjectPrefix": "idp",
                "timeoutSeconds": 1,
            },
        },
        {
            "type": "jwks",
            "options": {"url": keys_url, "issuer": [RESTRICTED_ISSUER], "timeoutSeconds": 1},
            "accessRestrictions": [{"plugin": "other"}],
        },
        {"type": "jwks", "options": {"url": down_url, "issuer": DOWN_ISSUER, "timeoutSeconds": 1}},
        {"type": "jwks", "options": {"url": slow_url, "issuer": SLOW_ISSUER, "timeoutSeconds": 1}},
    ]


@pytest.fixture
async def backend(keys: KeyServer, slow_keys: KeyServer) -> AsyncIterator[TestBackend]:
    """Plugins echo and other behind the gateway, with the external access entries above."""
    config: Any = base_config()
    down_url = f"http://127.0.0.1:{free_port()}/jwks.json"  # nothing listens there
    config["backend"]["auth"]["externalAccess"] += external_access(keys.url, slow_keys.url, down_url)
    features = [fixture_plugin(plugins.ECHO), fixture_plugin(plugins.OTHER)]
    async with start_test_backend(features, config=config) as b:
        yield b


async def call(backend: TestBackend, token: str, path: str = "/api/echo/private/whoami") -> httpx.Response:
    # a verifier that hung would fail this request: every answer must come well within it
    request = backend.client.get(path, headers={"Authorization": f"Bearer {token}"})
    return await asyncio.wait_for(request, 8)


async def test_a_legacy_token_is_the_service_of_its_entry(backend: TestBackend) -> None:
    assert (await call(backend, legacy_token())).json() == {"type": "service", "subject": "external:legacy-ci"}
    assert (await call(backend, TOKEN)).json()["subject"] == "external:ci-bot"  # static tokens still work beside


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(lambda: legacy_token(exp=int(time.time()) - 10), id="expired"),
        pytest.param(lambda: legacy_token(exp=None), id="no-exp"),
        pytest.param(lambda: legacy_token(sub="someone-else"), id="wrong-sub"),
        pytest.param(lambda: legacy_token(aud="catalog"), id="with-aud"),
        pytest.param(lambda: legacy_token(UNKNOWN_SECRET), id="wrong-secret"),
        pytest.param(lambda: unsigned(iss=None, aud=None), id="alg-none"),
        pytest.param(lambda: legacy_token(headers={"typ": "vnd.backstage.plugin"}), id="plugin-typ"),
        pytest.param(lambda: tampered(legacy_token(), alg="HS384"), id="alg-swapped"),
    ],
)
async def test_bad_legacy_tokens_are_401(backend: TestBackend, token: Callable[[], str]) -> None:
    assert_error_shape(await call(backend, token()), 401, "AuthenticationError")


async def test_a_jwks_token_is_the_service_with_the_prefixed_subject(backend: TestBackend) -> None:
    assert (await call(backend, idp_token())).json() == {"type": "service", "subject": "external:idp:alice"}
    got = (await call(backend, idp_token(iss=RESTRICTED_ISSUER, aud=None, sub="bob"), "/api/other/whoami")).json()
    assert got == {"type": "service", "subject": "external:bob"}  # no subjectPrefix, no audience asked


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(lambda: idp_token(iss="https://elsewhere.example"), id="wrong-issuer"),
        pytest.param(lambda: idp_token(aud="another-api"), id="wrong-audience"),
        pytest.param(lambda: idp_token(aud=None), id="no-audience"),
        pytest.param(lambda: idp_token(exp=int(time.time()) - 10), id="expired"),
        pytest.param(lambda: idp_token(exp=None), id="no-exp"),
        pytest.param(lambda: tampered(idp_token(), kid="k9"), id="unknown-kid"),
        pytest.param(lambda: idp_token(OTHER_KEY), id="another-key"),
        pytest.param(lambda: tampered(idp_token(sub="mallory"), alg="ES384"), id="alg-swapped"),
        pytest.param(unsigned, id="alg-none"),
    ],
)
async def test_bad_jwks_tokens_are_401(backend: TestBackend, token: Callable[[], str]) -> None:
    assert_error_shape(await call(backend, token()), 401, "AuthenticationError")


async def test_a_key_set_that_is_down_or_slow_is_401_not_a_hang(backend: TestBackend, slow_keys: KeyServer) -> None:
    for issuer in (DOWN_ISSUER, SLOW_ISSUER, DOWN_ISSUER, SLOW_ISSUER):  # again: no lasting harm either
        resp = await call(backend, idp_token(iss=issuer, aud=None))
        body = assert_error_shape(resp, 401, "AuthenticationError")
        assert body["error"]["message"] == "Invalid external token: its signing keys are unavailable"
    assert slow_keys.requests >= 1  # it was asked, and not waited for
    assert (await call(backend, idp_token())).status_code == 200  # other entries are unaffected


@pytest.mark.parametrize(
    "token", [lambda: legacy_token(RESTRICTED_SECRET), lambda: idp_token(iss=RESTRICTED_ISSUER, aud=None)]
)
async def test_access_restrictions_limit_plugins(backend: TestBackend, token: Callable[[], str]) -> None:
    assert (await call(backend, token(), "/api/other/whoami")).status_code == 200
    body = assert_error_shape(await call(backend, token()), 403, "NotAllowedError")
    assert "plugin 'echo'" in body["error"]["message"]


# ---------------------------------------------------------------------------- the verifiers themselves


def verifiers(*entries: dict[str, Any]) -> list[Any]:
    return external_verifiers(Config.from_dict({"backend": {"auth": {"externalAccess": list(entries)}}}))


RESTRICTIONS = [
    {"plugin": "catalog", "permission": "catalog.entity.read, catalog.entity.refresh catalog.entity.read"},
    {"plugin": "scaffolder", "permissionAttribute": {"action": ["read", "create"]}},
    {"plugin": "search", "permission": [], "permissionAttribute": {}},
]
EXPECTED = (
    ["catalog", "scaffolder", "search"],
    [
        PermissionRestriction("catalog", ["catalog.entity.read", "catalog.entity.refresh"], None),
        PermissionRestriction("scaffolder", None, ["read", "create"]),
    ],
)


def test_the_principal_carries_the_restrictions_by_plugin_and_permission(keys: KeyServer) -> None:
    (legacy,) = verifiers(
        {"type": "legacy", "options": {"secret": SECRET, "subject": "ci"}, "accessRestrictions": RESTRICTIONS}
    )
    verified = legacy.verify(legacy_token())
    p = verified.principal
    assert (p.type, p.subject, p.access_restrictions, p.permission_restrictions) == (
        "service",
        "external:ci",
        *EXPECTED,
    )
    assert verified.expires_at == pytest.approx(time.time() + 3600, abs=5) and verified.audience is None

    (jwks,) = verifiers(
        {"type": "jwks", "options": {"url": keys.url, "issuer": ISSUER}, "accessRestrictions": RESTRICTIONS},
    )
    p = asyncio.run(jwks.verify(idp_token(sub="ci")))
    assert isinstance(p.principal, Principal)
    assert (p.principal.subject, p.principal.access_restrictions, p.principal.permission_restrictions) == (
        "external:ci",
        *EXPECTED,
    )
    (unrestricted,) = verifiers({"type": "legacy", "options": {"secret": SECRET, "subject": "ci"}})
    assert unrestricted.verify(legacy_token()).principal == Principal("service", "external:ci")


def test_other_tokens_are_none_at_once() -> None:
    """No key fetch, no crypto: a static token, or a JWT of another kind, is not theirs."""
    legacy, jwks = verifiers(
        {"type": "legacy", "options": {"secret": SECRET, "subject": "ci"}},
        {"type": "jwks", "options": {"url": "http://127.0.0.1:9/jwks.json", "issuer": ISSUER}},
    )
    assert isinstance(legacy, LegacyTokens) and isinstance(jwks, JwksTokens)
    for token in (TOKEN, "a.b.c", "", idp_token(), unsigned(iss=None, aud=None)):
        assert legacy.verify(token) is None
    user = idp_token(headers={"typ": "vnd.backstage.user"})  # the token system's
    for token in (TOKEN, "a.b.c", legacy_token(), idp_token(iss="https://other.example"), unsigned(), user):
        assert jwks.verify(token) is None
    assert verifiers({"type": "static", "options": {"token": "long-enough", "subject": "x"}}, {"type": "acme"}) == []


def test_a_secret_as_short_as_backstage_docs_suggest_works_and_secrets_are_tried_in_turn() -> None:
    short = base64.b64encode(b"twenty-four-random-bytes").decode()  # randomBytes(24).toString('base64')
    (legacy,) = verifiers(
        {"type": "legacy", "options": {"secret": SECRET, "subject": "first"}},
        {"type": "legacy", "options": {"secret": short, "subject": "second"}},
    )
    assert legacy.verify(legacy_token(short)).principal.subject == "external:second"
    assert legacy.verify(legacy_token(SECRET)).principal.subject == "external:first"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"type": "legacy", "options": {"secret": SECRET}}, r"\[0\]\.options\.subject"),
        ({"type": "legacy", "options": {"secret": "not base64!", "subject": "x"}}, r"\[0\]\.options\.secret"),
        ({"type": "legacy", "options": {"secret": "abcde", "subject": "x"}}, r"\[0\]\.options\.secret .*base64"),
        ({"type": "legacy", "options": {"secret": SECRET, "subject": "x", "sub": "y"}}, r"unknown key 'sub'"),
        ({"type": "jwks", "options": {"url": "http://x/jwks.json"}}, r"\[0\]\.options\.issuer is required"),
        ({"type": "jwks", "options": {"url": "file:///etc/jwks", "issuer": "i"}}, r"\[0\]\.options\.url"),
        ({"type": "jwks", "options": {"url": "http://x", "issuer": "i", "algorithm": "HS256"}}, r"'HS256'"),
        ({"type": "jwks", "options": {"url": "http://x", "issuer": "i", "timeoutSeconds": 0}}, "timeoutSeconds"),
        ({"type": "jwks", "options": {"url": "http://x", "issuer": "i", "audiences": "a"}}, "unknown key 'audiences'"),
        ({"type": "jwks", "options": {"url": "http://x", "issuer": 5}}, r"\[0\]\.options\.issuer must be"),
    ],
)
def test_bad_entries_are_config_errors_naming_them(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=r"backend\.auth\.externalAccess\[0\]") as err:
        verifiers(entry)
    assert err.match(message)


def test_a_legacy_secret_declared_twice_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"externalAccess\[1\]\.options\.secret is declared by another"):
        verifiers(
            {"type": "legacy", "options": {"secret": SECRET, "subject": "a"}},
            {"type": "legacy", "options": {"secret": SECRET.rstrip("="), "subject": "b"}},
        )

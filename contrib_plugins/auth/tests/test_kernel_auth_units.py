"""The auth plugin's parts without a kernel: token format, entity refs, config, key rotation, external JWKS, claims."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
import msgspec
import pytest
from auth_support import AUDIENCE, ISSUER, Issuer
from cryptography.hazmat.primitives.asymmetric import ec
from kernel_auth.config import AuthConfig, OidcTokenProvider, token_lifetime
from kernel_auth.keys import KeyStore, SigningKeys, public_jwk
from kernel_auth.oidc_token import OidcTokenVerifier, map_claims
from kernel_auth.remote_jwks import RemoteJwks
from kernel_auth.tokens import b64url_decode, limited_token_of, parse_entity_ref, sign_user_token

from kernel.api import AuthenticationError, ServiceUnavailableError
from kernel.config import Config
from kernel_services.database import create_database


class _Logger:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def debug(self, msg: str, **fields: Any) -> None:
        self.lines.append((msg, fields))

    info = warning = error = exception = debug

    def child(self, **fields: Any) -> _Logger:
        return self


# ---------------------------------------------------------------------------- tokens


def _signed(sub: str = "user:default/jane", ent: list[str] | None = None) -> tuple[str, dict[str, Any]]:
    key = ec.generate_private_key(ec.SECP256R1())
    token = sign_user_token(
        key, "kid-1", issuer="http://x/api/auth", sub=sub, ent=ent or [sub], iat=1_700_000_000, exp=4_000_000_000
    )
    return token, {"keys": [public_jwk(key, "kid-1")]}


def test_user_token_has_backstage_header_and_claims_in_order() -> None:
    token, jwks = _signed(ent=["user:default/jane", "group:default/team-a"])
    header = json.loads(b64url_decode(token.split(".")[0]))
    claims = json.loads(b64url_decode(token.split(".")[1]))
    assert list(header.items()) == [("typ", "vnd.backstage.user"), ("alg", "ES256"), ("kid", "kid-1")]
    assert list(claims) == ["iss", "sub", "ent", "aud", "iat", "exp", "uip"]
    assert claims["ent"] == ["user:default/jane", "group:default/team-a"]
    key = jwt.PyJWKSet.from_dict(jwks)["kid-1"]
    assert jwt.decode(token, key.key, algorithms=["ES256"], audience="backstage")["sub"] == "user:default/jane"


def test_limited_token_is_rebuilt_exactly_and_verifies() -> None:
    token, jwks = _signed()
    limited = limited_token_of(token)
    head, payload, signature = limited.split(".")
    assert b64url_decode(head) == b'{"typ":"vnd.backstage.limited-user","alg":"ES256","kid":"kid-1"}'
    assert b64url_decode(payload) == b'{"sub":"user:default/jane","iat":1700000000,"exp":4000000000}'
    assert signature == json.loads(b64url_decode(token.split(".")[1]))["uip"]
    key = jwt.PyJWKSet.from_dict(jwks)["kid-1"]
    assert jwt.decode(limited, key.key, algorithms=["ES256"]) == {
        "sub": "user:default/jane",
        "iat": 1700000000,
        "exp": 4000000000,
    }
    assert jwt.get_unverified_header(limited)["typ"] == "vnd.backstage.limited-user"
    assert limited_token_of(limited) == limited  # a limited token stays as it is


def test_limited_token_of_refuses_what_is_not_a_user_token() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    plugin_token = jwt.encode({"sub": "plugin:x"}, key, algorithm="ES256", headers={"typ": "vnd.backstage.plugin"})
    no_uip = jwt.encode({"sub": "user:default/x"}, key, algorithm="ES256", headers={"typ": "vnd.backstage.user"})
    for bad in ("", "a.b", "a.b.c", plugin_token, no_uip):
        with pytest.raises(ValueError):
            limited_token_of(bad)


def test_a_forged_uip_does_not_verify() -> None:
    token, jwks = _signed()
    other, _ = _signed()  # another key's proof
    head, body, sig = token.split(".")
    claims = json.loads(b64url_decode(body))
    claims["uip"] = json.loads(b64url_decode(other.split(".")[1]))["uip"]
    forged = limited_token_of(f"{head}.{jwt.utils.base64url_encode(json.dumps(claims).encode()).decode()}.{sig}")
    key = jwt.PyJWKSet.from_dict(jwks)["kid-1"]
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(forged, key.key, algorithms=["ES256"])


@pytest.mark.parametrize(
    ("ref", "kwargs", "expected"),
    [
        ("user:development/guest", {}, "user:development/guest"),
        ("User:Default/Jane.Doe", {}, "user:default/Jane.Doe"),
        ("user:jane", {}, "user:default/jane"),
        ("team-a", {"default_kind": "group"}, "group:default/team-a"),
    ],
)
def test_entity_refs_are_normalized(ref: str, kwargs: dict[str, Any], expected: str) -> None:
    assert parse_entity_ref(ref, **kwargs) == expected


@pytest.mark.parametrize("ref", ["jane", "user:a/b/c", "user:default/", "user:default/a b", "user:x:y", "", "user:-/x"])
def test_invalid_entity_refs_are_refused(ref: str) -> None:
    with pytest.raises(ValueError):
        parse_entity_ref(ref)


# ---------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(None, 3600), (7200, 7200), (60, 600), (10**6, 86400), ({"minutes": 30}, 1800), ({"hours": 48}, 86400)],
)
def test_token_lifetime_is_clamped_like_backstage(value: Any, seconds: int) -> None:
    raw = {} if value is None else {"backstageTokenExpiration": value}
    assert token_lifetime(msgspec.convert(raw, AuthConfig, strict=False)) == seconds


@pytest.mark.parametrize(
    "raw",
    [
        {"keyRotationSeconds": 0},
        {"providers": {"guest": {"userEntityRef": "guest"}}},
        {"providers": {"guest": {"allowOutsideDevelopment": True}}},
        {"providers": {"oidcToken": {"issuer": "i", "jwksUrl": "u"}}},  # no audience
        {"providers": {"oidcToken": {"issuer": "i", "jwksUrl": "u", "audience": "a", "algorithms": ["HS256"]}}},
        {"providers": {"oidcToken": {"issuer": "i", "jwksUrl": "u", "audience": "a", "userEntityRefTemplate": "{x}"}}},
    ],
)
def test_config_mistakes_are_schema_errors(raw: dict[str, Any]) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(raw, AuthConfig, strict=False)


def test_backstage_auth_keys_this_plugin_does_not_read_are_accepted() -> None:
    raw = {"session": {"secret": "x"}, "environment": "development", "providers": {"github": {"development": {}}}}
    assert msgspec.convert(raw, AuthConfig, strict=False).providers.oidc_token is None


# ---------------------------------------------------------------------------- signing keys


async def test_keys_rotate_and_stay_published_until_their_tokens_expire(tmp_path: Path) -> None:
    config = Config.from_dict({"backend": {"database": {"connection": {"directory": str(tmp_path)}}}})
    database = create_database(config, "auth")
    now = [1000.0]
    keys = SigningKeys(KeyStore(database), _Logger(), clock=lambda: now[0])  # type: ignore[arg-type]
    try:
        first = await keys.current(10, 600)
        assert await keys.current(10, 600) is first
        assert (first.sign_until, first.published_until) == (1010.0, 1000.0 + 610)  # rotation + token lifetime
        assert [k["kid"] for k in await keys.public_keys()] == [first.kid]
        now[0] = 1010.0
        second = await keys.current(10, 600)
        assert second.kid != first.kid
        assert [k["kid"] for k in await keys.public_keys()] == [first.kid, second.kid]
        jwk = (await keys.public_keys())[0]
        assert {jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"]} == {"EC", "P-256", "ES256", "sig"}
        assert "d" not in jwk  # never the private part
        now[0] = 1610.0  # first key's last token has expired: unpublished (and deleted)
        assert [k["kid"] for k in await keys.public_keys()] == [second.kid]
        long = SigningKeys(KeyStore(database), _Logger(), clock=lambda: now[0])  # type: ignore[arg-type]
        assert (await long.current(3600, 600)).published_until == 1610.0 + 3 * 3600  # 3 x the rotation
        assert "private" not in repr(second) and "EllipticCurve" not in repr(second)
    finally:
        await database.close()


async def test_keys_that_never_signed_are_unpublished(tmp_path: Path) -> None:
    config = Config.from_dict({"backend": {"database": {"connection": {"directory": str(tmp_path)}}}})
    database = create_database(config, "auth")
    now = [1000.0]
    keys = SigningKeys(KeyStore(database), _Logger(), clock=lambda: now[0])  # type: ignore[arg-type]
    try:
        unused = await keys.current(10, 600, sign=False)  # published at start-up
        now[0] = 1010.0
        used = await keys.current(10, 600)  # replaced before it signed: unpublished
        assert [k["kid"] for k in await keys.public_keys()] == [used.kid]
        assert unused.kid != used.kid
        await keys.retire()  # it signed: stays published
        assert [k["kid"] for k in await keys.public_keys()] == [used.kid]
        now[0] = 1020.0
        last = await keys.current(10, 600, sign=False)
        await keys.retire()
        assert last.kid not in [k["kid"] for k in await keys.public_keys()]
    finally:
        await database.close()


# ---------------------------------------------------------------------------- external issuer keys


async def test_remote_jwks_caches_by_kid_and_refreshes_unknown_kids_at_most_every_interval(issuer: Issuer) -> None:
    kid = issuer.add_key()
    now = [0.0]
    jwks = RemoteJwks(issuer.url, refresh_interval=30, clock=lambda: now[0])
    assert len(await jwks.keys_for(kid)) == 1
    assert len(await jwks.keys_for(kid)) == 1
    assert jwks.fetches == 1  # cached
    new = issuer.add_key("ec")
    now[0] = 5.0
    with pytest.raises(AuthenticationError):
        await jwks.keys_for(new)  # unknown, but the keys were fetched less than 30 s ago
    assert jwks.fetches == 1
    now[0] = 30.0
    assert len(await jwks.keys_for(new)) == 1  # unknown kid: refetched
    assert jwks.fetches == 2
    now[0] = 40.0
    for _ in range(3):
        with pytest.raises(AuthenticationError):
            await jwks.keys_for("made-up")
    assert jwks.fetches == 2  # within 30 s of the last fetch: no more requests to the issuer
    now[0] = 60.0
    with pytest.raises(AuthenticationError):
        await jwks.keys_for("made-up")
    assert jwks.fetches == 3


async def test_remote_jwks_unreachable_or_slow_is_503(issuer: Issuer) -> None:
    with pytest.raises(ServiceUnavailableError):
        await RemoteJwks("http://127.0.0.1:9/jwks.json", timeout=2).keys_for("x")
    issuer.delay = 1.5
    try:
        started = time.monotonic()
        with pytest.raises(ServiceUnavailableError):
            await RemoteJwks(issuer.url, timeout=0.3).keys_for("x")
        assert time.monotonic() - started < 1.4
    finally:
        issuer.delay = 0


def _provider(issuer: Issuer, **over: Any) -> OidcTokenProvider:
    raw = {"issuer": ISSUER, "jwksUrl": issuer.url, "audience": AUDIENCE, **over}
    return msgspec.convert(raw, OidcTokenProvider)


async def test_id_token_checks(issuer: Issuer) -> None:
    kid = issuer.add_key()
    verifier = OidcTokenVerifier(_provider(issuer), _Logger())  # type: ignore[arg-type]
    assert (await verifier.verify(issuer.id_token(kid)))["email"] == "jane.doe@example.com"
    hits = issuer.hits
    cases = {
        "issuer": issuer.id_token(kid, iss="https://evil.example"),
        "expired": issuer.id_token(kid, iat=int(time.time()) - 600, exp=int(time.time()) - 300),
        "audience": issuer.id_token(kid, aud="someone-else"),
        "signature": issuer.id_token(kid, key=issuer.keys[issuer.add_key()][0]),  # right kid, wrong key
        "algorithm": jwt.encode({"iss": ISSUER}, "s" * 32, algorithm="HS256", headers={"kid": kid}),
    }
    for word, token in cases.items():
        with pytest.raises(AuthenticationError, match=word):
            await verifier.verify(token)
    assert issuer.hits == hits  # none of these needed another fetch of the issuer's keys


def test_claims_map_to_entity_refs(issuer: Issuer) -> None:
    provider = _provider(issuer, ownershipClaim="groups")
    got = map_claims(provider, {"email": "jane.doe@example.com", "groups": ["team-a", "group:ops/sre", "not valid!"]})
    assert got.user_entity_ref == "user:default/jane.doe"
    assert got.ownership_entity_refs == ["user:default/jane.doe", "group:default/team-a", "group:ops/sre"]
    assert got.profile == {"email": "jane.doe@example.com"}
    sub = _provider(issuer, userEntityRefTemplate="user:{tenant}/{preferred_username}")
    assert map_claims(sub, {"tenant": "acme", "preferred_username": "jd"}).user_entity_ref == "user:acme/jd"
    for claims in ({"email": "x"}, {"email": "a/b@example.com"}, {"email": "user:admin@example.com"}, {}):
        with pytest.raises(AuthenticationError):
            map_claims(provider, claims)  # no usable email: no user

"""Wire compatibility with the reference system: a real Backstage backend and a kernel verify each
other's plugin tokens, and agree on user tokens and their limited tokens.

The Backstage side is ``backstage_backend.js``: ``createBackend()`` of ``@backstage/backend-defaults``
(pinned in ``package-lock.json``) with its default services, so Backstage's own
``DefaultAuthService`` / ``DefaultPluginTokenHandler`` / ``JwksClient`` / ``UserTokenHandler`` issue
and verify; user tokens come from ``@backstage/plugin-auth-backend``'s own ``TokenFactory``. Our side
is a real kernel with plugins ``caller`` and ``callee`` (as ``tests/services/test_auth_tokens.py``).
Each side finds the other's plugins, and ``auth``, through its discovery config, nothing else.

The tests at the end pin ``services.auth.tokens.limited_token_of`` to Backstage's
``createLimitedUserToken`` on the edge cases (a header without ``kid``, a token without ``uip``).

Node packages: ``scripts/interop-setup`` (``npm ci --ignore-scripts``), run here when needed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from kernel.testing import KernelProcess, free_port, make_package
from kernel_services.auth.tokens import LIMITED_USER_TYP, PLUGIN_TYP, USER_TYP, b64encode, limited_token_of
from tests import plugins
from tests.conftest import assert_error_shape, base_config

HERE = Path(__file__).resolve().parent
SETUP = HERE.parent.parent / "scripts" / "interop-setup"
USER = "user:default/ada"
GROUPS = [USER, "group:default/team-a"]


@dataclass
class Systems:
    kernel: httpx.Client
    backstage: httpx.Client
    backstage_url: str


@pytest.fixture(scope="module")
def node_modules() -> Path:
    """The Node packages installed from the lock file (fails, never skips, without Node)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("Node >= 20 and npm are needed by tests/interop (the project's machines have them)")
    done = subprocess.run([str(SETUP)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"scripts/interop-setup failed:\n{done.stdout}\n{done.stderr}"
    return HERE / "node_modules"


def start_backstage(port: int, endpoints: list[dict[str, Any]], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["node", str(HERE / "backstage_backend.js"), json.dumps({"port": port, "endpoints": endpoints})],
            cwd=HERE,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "NODE_ENV": "production"},
        )
    deadline = time.monotonic() + 30
    while b"BACKSTAGE READY" not in log.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail(f"the Backstage backend did not start:\n{log.read_text(errors='replace')[-4000:]}")
        time.sleep(0.05)
    return proc


@pytest.fixture(scope="module")
def systems(node_modules: Path, site: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Systems]:
    root = tmp_path_factory.mktemp("interop")
    make_package(root, "kernel-test-caller", {"test_caller": plugins.CALLER}, {"caller": "test_caller:plugin"})
    make_package(root, "kernel-test-callee", {"test_callee": plugins.CALLEE}, {"callee": "test_callee:plugin"})
    backstage_port = free_port()
    backstage_url = f"http://127.0.0.1:{backstage_port}"
    config = base_config()
    config["discovery"] = {
        "endpoints": [{"target": f"{backstage_url}/api/{{{{pluginId}}}}", "plugins": ["bsplugin", "auth"]}]
    }
    config["backend"]["database"] = {"connection": {"directory": str(tmp_path_factory.mktemp("db"))}}  # type: ignore[index]
    kernel = KernelProcess(config, paths=[site, root])
    # the kernel's port is chosen now; Backstage's discovery sends caller and callee there
    endpoints = [{"target": f"{kernel.url}/api/{{{{pluginId}}}}", "plugins": ["caller", "callee", "echo", "other"]}]
    log = Path(tempfile.mkdtemp(prefix="backstage-interop-")) / "backstage.log"
    backstage = start_backstage(backstage_port, endpoints, log)
    try:
        kernel.start()
        with (
            httpx.Client(base_url=kernel.url, timeout=20) as k,
            httpx.Client(base_url=backstage_url, timeout=20) as b,
        ):
            yield Systems(k, b, backstage_url)
    finally:
        kernel.stop()
        backstage.terminate()
        try:
            backstage.wait(10)
        except subprocess.TimeoutExpired:
            backstage.kill()
            backstage.wait()
        shutil.rmtree(log.parent, ignore_errors=True)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def backstage_user_token(s: Systems, sub: str = USER, ent: list[str] | None = None) -> str:
    """A user token issued by Backstage's own TokenFactory (plugin-auth-backend), keys at its /api/auth."""
    answer = s.backstage.post("/api/auth/issue", json={"sub": sub, "ent": ent if ent is not None else GROUPS})
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["token"]
    return token


def backstage_user_key(s: Systems, token: str) -> jwt.PyJWK:
    kid = jwt.get_unverified_header(token)["kid"]
    keys = s.backstage.get("/api/auth/.well-known/jwks.json").json()["keys"]
    return jwt.PyJWK.from_dict(next(k for k in keys if k["kid"] == kid))


# -- plugin tokens, kernel -> Backstage ----------------------------------------------------------------


def test_backstage_accepts_a_plugin_token_of_a_kernel_plugin(systems: Systems) -> None:
    """Our caller, finding bsplugin by discovery, calls it with a token for aud=bsplugin; Backstage's
    PluginTokenHandler fetches caller's keys from the kernel's JWKS and calls it plugin:caller."""
    got = systems.kernel.get("/api/caller/call", params={"target": "bsplugin", "path": "/whoami"}).json()
    assert got == {"status": 200, "body": {"type": "service", "subject": "plugin:caller", "actor": ""}}
    # the raw token, presented by hand: the same answer
    token = systems.kernel.get("/api/caller/token", params={"target": "bsplugin"}).text
    answer = systems.backstage.get("/api/bsplugin/whoami", headers=bearer(token))
    assert answer.json() == {"type": "service", "subject": "plugin:caller", "actor": ""}


def test_backstage_refuses_a_kernel_plugin_token_for_another_plugin(systems: Systems) -> None:
    token = systems.kernel.get("/api/caller/token", params={"target": "callee"}).text
    answer = systems.backstage.get("/api/bsplugin/whoami", headers=bearer(token))
    assert answer.status_code == 401 and answer.json()["error"]["name"] == "AuthenticationError"


# -- plugin tokens, Backstage -> kernel ----------------------------------------------------------------


def test_the_kernel_accepts_a_plugin_token_of_a_backstage_plugin(systems: Systems) -> None:
    """bsplugin, finding callee by discovery, calls it with a token from Backstage's auth service; the
    gateway fetches bsplugin's keys from Backstage's JWKS and calls it plugin:bsplugin."""
    got = systems.backstage.get("/api/bsplugin/call", params={"target": "callee", "path": "/whoami"}).json()
    assert got["status"] == 200, got
    assert got["body"] == {"type": "service", "subject": "plugin:bsplugin", "actor": ""}
    header, claims = (
        jwt.get_unverified_header(got["token"]),
        jwt.decode(got["token"], options={"verify_signature": False}),
    )
    assert header["typ"] == PLUGIN_TYP and header["alg"] == "ES256"
    assert claims["sub"] == "bsplugin" and claims["aud"] == "callee" and claims["exp"] - claims["iat"] == 3600
    # the same token, presented by hand, passes where it is meant to and nowhere else
    assert systems.kernel.get("/api/callee/whoami", headers=bearer(got["token"])).json()["subject"] == "plugin:bsplugin"
    assert_error_shape(
        systems.kernel.get("/api/other/whoami", headers=bearer(got["token"])), 401, "AuthenticationError"
    )


# -- user tokens ---------------------------------------------------------------------------------------


def test_the_kernel_accepts_a_backstage_user_token(systems: Systems) -> None:
    token = backstage_user_token(systems)
    got = systems.kernel.get("/api/callee/whoami", headers=bearer(token)).json()
    assert got == {"type": "user", "subject": USER, "actor": "", "ownership": GROUPS}


def test_our_limited_token_of_a_backstage_user_token_is_backstages_and_verifies(systems: Systems) -> None:
    """kernel_services.auth.tokens.limited_token_of rebuilds, byte for byte, what Backstage's
    UserTokenHandler.createLimitedUserToken does, and PyJWT verifies it with the Node key."""
    token = backstage_user_token(systems)
    ours, expires = limited_token_of(token)
    theirs = systems.backstage.post("/api/bsplugin/limited", json={"token": token}).json()
    assert ours == theirs["token"] and expires == theirs["expiresAt"]
    assert jwt.get_unverified_header(ours) == {
        "typ": LIMITED_USER_TYP,
        "alg": "ES256",
        "kid": jwt.get_unverified_header(token)["kid"],
    }
    claims = jwt.decode(ours, backstage_user_key(systems, token), algorithms=["ES256"])
    assert claims["sub"] == USER and claims == {
        k: jwt.decode(token, options={"verify_signature": False})[k] for k in ("sub", "iat", "exp")
    }


def test_backstage_rebuilds_and_verifies_the_limited_token_of_our_user_token(systems: Systems) -> None:
    """The other way: a user token as the contrib auth plugin signs it; Backstage's rebuild of its
    limited token is ours, and jose verifies it with our public key as UserTokenHandler does."""
    from kernel_auth.keys import public_jwk
    from kernel_auth.tokens import sign_user_token

    key, kid, now = ec.generate_private_key(ec.SECP256R1()), str(uuid.uuid4()), int(time.time())
    token = sign_user_token(key, kid, issuer="http://kernel/api/auth", sub=USER, ent=GROUPS, iat=now, exp=now + 600)
    assert jwt.get_unverified_header(token)["typ"] == USER_TYP
    theirs = systems.backstage.post("/api/bsplugin/limited", json={"token": token, "jwk": public_jwk(key, kid)}).json()
    assert theirs["token"] == limited_token_of(token)[0]
    assert theirs["verified"] == {"sub": USER, "iat": now, "exp": now + 600}


def test_a_backstage_plugin_calls_a_kernel_plugin_on_behalf_of_a_user(systems: Systems) -> None:
    """Backstage makes the limited token (obo) from its own user token; the gateway verifies it
    against Backstage's auth keys."""
    token = backstage_user_token(systems)
    got = systems.backstage.get(
        "/api/bsplugin/call-as-user", params={"target": "callee", "path": "/whoami"}, headers=bearer(token)
    ).json()
    assert got["status"] == 200, got
    assert got["body"] == {"type": "user", "subject": USER, "actor": "plugin:bsplugin", "ownership": [USER]}


def test_a_kernel_plugin_calls_a_backstage_plugin_on_behalf_of_a_user(systems: Systems) -> None:
    """The kernel makes the limited token (limited_token_of) and the plugin token; Backstage verifies both."""
    token = backstage_user_token(systems)
    got = systems.kernel.get(
        "/api/caller/call-as-user", params={"target": "bsplugin", "path": "/whoami"}, headers=bearer(token)
    ).json()
    assert got == {"type": "user", "subject": USER, "actor": "plugin:caller"}


NON_ASCII_USER = "user:default/zoë"


def test_a_user_ref_beyond_ascii_gives_the_same_limited_token(systems: Systems) -> None:
    """Backstage's issuer only parses the ref (no charset check) and JSON.stringify keeps UTF-8."""
    token = backstage_user_token(systems, NON_ASCII_USER, [NON_ASCII_USER])
    theirs = systems.backstage.post("/api/bsplugin/limited", json={"token": token}).json()
    assert limited_token_of(token)[0] == theirs["token"]
    got = systems.kernel.get(
        "/api/caller/call-as-user", params={"target": "bsplugin", "path": "/whoami"}, headers=bearer(token)
    ).json()
    assert got == {"type": "user", "subject": NON_ASCII_USER, "actor": "plugin:caller"}


def _sign(header: dict[str, Any], claims: dict[str, Any], key: ec.EllipticCurvePrivateKey) -> str:
    """A compact JWS with exactly this header and these claims, key order kept (as jose writes them)."""
    from jwt.algorithms import ECAlgorithm

    encode = lambda part: b64encode(json.dumps(part, separators=(",", ":"), ensure_ascii=False).encode())  # noqa: E731
    signing_input = f"{encode(header)}.{encode(claims)}"
    return f"{signing_input}.{b64encode(ECAlgorithm(ECAlgorithm.SHA256).sign(signing_input.encode(), key))}"


def _user_token(*, kid: str | None, uip: bool) -> str:
    """A user token as Backstage's issueUserToken signs it: no ``kid`` header when the key has none."""
    key, now = ec.generate_private_key(ec.SECP256R1()), int(time.time())
    kid_part = {"kid": kid} if kid else {}
    claims: dict[str, Any] = {"iss": "x", "sub": USER, "ent": GROUPS, "aud": "backstage", "iat": now, "exp": now + 600}
    if uip:
        limited = _sign(
            {"typ": LIMITED_USER_TYP, "alg": "ES256", **kid_part}, {"sub": USER, "iat": now, "exp": now + 600}, key
        )
        claims["uip"] = limited.rsplit(".", 1)[1]
    return _sign({"typ": USER_TYP, "alg": "ES256", **kid_part}, claims, key)


def test_the_limited_token_of_a_user_token_without_key_id_is_backstages(systems: Systems) -> None:
    token = _user_token(kid=None, uip=True)
    theirs = systems.backstage.post("/api/bsplugin/limited", json={"token": token}).json()
    assert limited_token_of(token)[0] == theirs["token"]


def test_a_user_token_without_identity_proof_gives_no_limited_token(systems: Systems) -> None:
    token = _user_token(kid="k1", uip=False)
    answer = systems.backstage.post("/api/bsplugin/limited", json={"token": token})
    assert answer.status_code == 401 and "missing user identity proof" in answer.json()["error"]["message"]
    with pytest.raises(ValueError):
        limited_token_of(token)

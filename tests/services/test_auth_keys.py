"""Plugin keys through real kernels: rotation while calls continue, replicas, two kernels sharing PostgreSQL.

Every worker makes its own key and publishes it in the plugin's database before it signs with
it; verifiers that meet an unknown key id fetch the key set again (after a short cooldown).
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from kernel.testing import KernelProcess, make_package, wait_for
from tests import plugins
from tests.conftest import base_config
from tests.services.conftest import PG_ADMIN_DSN, unique_name


@pytest.fixture(scope="module")
def callers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("callers")
    make_package(root, "kernel-test-caller", {"test_caller": plugins.CALLER}, {"caller": "test_caller:plugin"})
    make_package(root, "kernel-test-callee", {"test_callee": plugins.CALLEE}, {"callee": "test_callee:plugin"})
    return root


def _config(database: dict[str, Any], **auth: Any) -> dict[str, Any]:
    config = base_config()
    config["backend"]["database"] = database
    config["backend"]["auth"].update(auth)
    return config


def _call(c: httpx.Client) -> dict[str, Any]:
    got: dict[str, Any] = c.get("/api/caller/call", params={"target": "callee", "path": "/whoami"}).json()
    return got


def _kids(c: httpx.Client) -> set[str]:
    return {k["kid"] for k in c.get("/api/caller/.backstage/auth/v1/jwks.json").json()["keys"]}


def test_keys_rotate_while_calls_continue(site: Path, callers: Path, tmp_path: Path) -> None:
    config = _config({"connection": {"directory": str(tmp_path)}}, keyDurationSeconds=2)
    with KernelProcess(config, paths=[site, callers]) as k, httpx.Client(base_url=k.url, timeout=30) as c:
        seen: set[str] = set()
        answers: list[dict[str, Any]] = []

        def rotated_three_times() -> bool:
            answers.append(_call(c))
            token = c.get("/api/caller/token", params={"target": "callee"}).text
            seen.add(jwt.get_unverified_header(token)["kid"])
            return len(seen) >= 3

        wait_for(rotated_three_times, 60, "the signing key did not rotate", interval=0.2)
        expected = {"status": 200, "body": {"type": "service", "subject": "plugin:caller", "actor": ""}}
        assert all(a == expected for a in answers), [a for a in answers if a != expected][:3]
        assert seen <= _kids(c)  # old keys stay published after their last token


def test_replicas_publish_and_verify_each_others_keys(site: Path, callers: Path, tmp_path: Path) -> None:
    config = _config({"connection": {"directory": str(tmp_path)}})
    config["backend"]["workers"]["plugins"] = {"caller": {"replicas": 2}}
    with KernelProcess(config, paths=[site, callers]) as k, httpx.Client(base_url=k.url, timeout=30) as c:
        kids: set[str] = set()

        def token() -> str:
            with httpx.Client(base_url=k.url, timeout=30) as own:  # concurrent: the least-loaded replica
                return own.get("/api/caller/token", params={"target": "callee"}).text

        def both_replicas_signed() -> bool:
            with ThreadPoolExecutor(8) as pool:
                kids.update(jwt.get_unverified_header(t)["kid"] for t in pool.map(lambda _: token(), range(16)))
            assert _call(c)["status"] == 200
            return len(kids) == 2

        wait_for(both_replicas_signed, 30, "calls did not reach both replicas", interval=0.05)
        assert kids <= _kids(c)  # either replica's JWKS lists both keys: they share the database


@pytest.mark.usefixtures("engines_cleanup")
def test_two_kernels_sharing_postgresql_verify_each_others_tokens(site: Path, callers: Path) -> None:
    shared_pg = {"client": "pg", "connection": PG_ADMIN_DSN, "prefix": unique_name() + "_"}
    with (
        KernelProcess(_config(shared_pg), paths=[site, callers]) as a,
        KernelProcess(_config(shared_pg), paths=[site, callers]) as b,
        httpx.Client(timeout=30) as c,
    ):
        for issuer, verifier in ((a, b), (b, a)):
            token = c.get(f"{issuer.url}/api/caller/token", params={"target": "callee"}).text
            got = c.get(f"{verifier.url}/api/callee/whoami", headers={"Authorization": f"Bearer {token}"})
            assert got.json() == {"type": "service", "subject": "plugin:caller", "actor": ""}, got.text


def _key_files(directory: Path, name: str) -> tuple[Path, Path]:
    """A P-256 pair as openssl makes them: PKCS#8 private and SPKI public PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    private, public = directory / f"{name}.key", directory / f"{name}.pub"
    private.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    return private, public


def test_static_key_files_sign_and_every_one_is_published(site: Path, callers: Path, tmp_path: Path) -> None:
    signing, signing_public = _key_files(tmp_path, "current")
    _, old_public = _key_files(tmp_path, "previous")
    store = {
        "type": "static",
        "static": {
            "keys": [
                {"publicKeyFile": str(signing_public), "privateKeyFile": str(signing), "keyId": "current"},
                {"publicKeyFile": str(old_public), "keyId": "previous"},  # still published, no longer signs
            ]
        },
    }
    config = _config({"connection": {"directory": str(tmp_path)}}, pluginKeyStore=store)
    with KernelProcess(config, paths=[site, callers]) as k, httpx.Client(base_url=k.url, timeout=30) as c:
        token = c.get("/api/caller/token", params={"target": "callee"}).text
        assert jwt.get_unverified_header(token)["kid"] == "current"
        assert _kids(c) == {"current", "previous"}
        assert _call(c)["body"]["subject"] == "plugin:caller"


def test_a_static_key_store_without_a_signing_key_stops_startup(tmp_path: Path) -> None:
    _, public = _key_files(tmp_path, "only-public")
    cfg = tmp_path / "app-config.yaml"
    store = {"type": "static", "static": {"keys": [{"publicKeyFile": str(public), "keyId": "k"}]}}
    cfg.write_text(json.dumps({"backend": {"listen": {"port": 0}, "auth": {"pluginKeyStore": store}}}))
    proc = subprocess.run(
        [sys.executable, "-m", "kernel.cli", "serve", "--config", str(cfg)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "pluginKeyStore of type static needs static.keys, the first with a privateKeyFile" in proc.stderr

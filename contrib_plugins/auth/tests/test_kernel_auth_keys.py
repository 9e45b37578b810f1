"""Signing keys across worker replicas and over rotations, in real kernels."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any

import jwt
from auth_support import guest_token, jwks_of, start_kernel, verify_with_jwks

from kernel.testing import wait_for


def _kids(jwks: dict[str, Any]) -> set[str]:
    return {k["kid"] for k in jwks["keys"]}


def test_two_replicas_publish_each_others_keys(tmp_path: Path) -> None:
    k = start_kernel(tmp_path, {"backend": {"workers": {"plugins": {"auth": {"replicas": 2}}}}})
    try:
        # each replica publishes its key when it starts, in the database both share
        kids = wait_for(lambda: len(_kids(jwks_of(k))) == 2 and _kids(jwks_of(k)), 10, "two published keys")
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: jwks_of(k), range(16)))
            tokens = list(pool.map(lambda _: guest_token(k)["backstageIdentity"]["token"], range(16)))
        assert all(_kids(a) == kids for a in answers)  # whichever replica answers lists both keys
        used = {jwt.get_unverified_header(t)["kid"] for t in tokens}
        assert used <= kids
        for token in tokens:
            verify_with_jwks(token, answers[0], audience="backstage")
    finally:
        k.stop()


def test_a_kernel_that_issued_no_token_leaves_no_key_behind(tmp_path: Path) -> None:
    def rows() -> list[str]:
        with closing(sqlite3.connect(tmp_path / "data" / "auth.sqlite")) as db:
            return [kid for (kid,) in db.execute("SELECT kid FROM auth_signing_keys")]

    k = start_kernel(tmp_path)
    try:
        assert len(jwks_of(k)["keys"]) == 1  # published at start-up, before any token
    finally:
        k.stop()
    assert rows() == []
    k = start_kernel(tmp_path)
    try:
        kid = jwt.get_unverified_header(guest_token(k)["backstageIdentity"]["token"])["kid"]
    finally:
        k.stop()
    assert rows() == [kid]  # it signed a token: published until that token expires


def test_rotation_replaces_the_signing_key_and_old_tokens_stay_verifiable(tmp_path: Path) -> None:
    k = start_kernel(tmp_path, {"auth": {"keyRotationSeconds": 0.5}})
    try:
        old = guest_token(k)["backstageIdentity"]["token"]
        old_kid = jwt.get_unverified_header(old)["kid"]

        def rotated() -> str | None:
            token: str = guest_token(k)["backstageIdentity"]["token"]
            return token if jwt.get_unverified_header(token)["kid"] != old_kid else None

        new = wait_for(rotated, 10, "a token signed with a new key", interval=0.2)
        jwks = jwks_of(k)
        assert {old_kid, jwt.get_unverified_header(new)["kid"]} <= _kids(jwks)
        for token in (old, new):
            assert verify_with_jwks(token, jwks, audience="backstage")["sub"] == "user:development/guest"
    finally:
        k.stop()

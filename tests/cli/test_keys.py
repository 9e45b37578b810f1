"""`kernel keys generate`: CurveZMQ certificates in pyzmq's format, the secret one private, a plugin binding."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import zmq.auth

from kernel.transport.curve import AllowedKeys, fingerprint


def _keys(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kernel.cli", "keys", *args], capture_output=True, text=True, timeout=60
    )


def test_generate_writes_a_public_and_a_private_certificate(tmp_path: Path) -> None:
    folder = tmp_path / "curve"
    done = _keys("generate", str(folder), "--name", "server")
    assert done.returncode == 0, done.stderr
    public, secret = folder / "server.key", folder / "server.key_secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and stat.S_IMODE(public.stat().st_mode) == 0o644
    pub, sec = zmq.auth.load_certificate(str(secret))  # pyzmq's own format, both halves
    assert sec is not None and zmq.auth.load_certificate(str(public)) == (pub, None)
    assert fingerprint(pub) in done.stdout and "server.key_secret" in done.stdout
    assert sec.decode() not in done.stdout + public.read_text()  # the secret is printed nowhere

    again = _keys("generate", str(folder), "--name", "server")
    assert again.returncode == 2 and "server.key exists already" in again.stderr
    assert zmq.auth.load_certificate(str(secret)) == (pub, sec)  # not overwritten


def test_a_key_bound_to_plugins_says_so_in_its_public_certificate(tmp_path: Path) -> None:
    assert (
        _keys("generate", str(tmp_path), "--name", "search", "--plugin", "search", "--plugin", "catalog").returncode
        == 0
    )
    assert _keys("generate", str(tmp_path), "--name", "any").returncode == 0
    (tmp_path / "search.key_secret").unlink()  # allowedKeys holds public certificates only
    (tmp_path / "any.key_secret").unlink()
    allowed = AllowedKeys(tmp_path)
    by_name = {k.name: k for k in allowed.keys.values()}
    assert by_name["search.key"].allows("catalog") and not by_name["search.key"].allows("other")
    assert by_name["any.key"].allows("other")

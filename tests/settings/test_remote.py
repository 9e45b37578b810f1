"""``backend.workers.remote``: its addresses and key files checked at start-up, the key named."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kernel.config import Config, ConfigError
from kernel.settings import RemoteWorkers, read_settings


def _remote(**keys: object) -> RemoteWorkers:
    remote = read_settings(Config.from_dict({"backend": {"workers": {"remote": keys}}})).workers.remote
    assert remote is not None
    return remote


def test_unset_means_nothing_listens_on_tcp() -> None:
    assert read_settings(Config.from_dict({})).workers.remote is None


def test_endpoints_of_the_join_port_and_the_gateways() -> None:
    remote = _remote(listen="0.0.0.0:7400", advertise="kernel.example:9000", serverKey="s", allowedKeys="a")
    assert remote.join_endpoint() == "tcp://0.0.0.0:7400"
    assert remote.gateway_endpoint(1) == "tcp://0.0.0.0:7402"
    assert remote.gateway_endpoint(0, advertised=True) == "tcp://kernel.example:9001"


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"listen": "7400", "serverKey": "s", "allowedKeys": "a"}, "backend.workers.remote.listen: expected host:port"),
        ({"allowedKeys": "a"}, "backend.workers.remote.serverKey is required"),
        ({"serverKey": "s"}, "backend.workers.remote.allowedKeys is required"),
        ({"serverKey": "s", "allowedKeys": "a", "heartbeatTimeout": 0}, "backend.workers.remote.heartbeatTimeout"),
    ],
)
def test_mistakes_name_the_key(keys: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _remote(**keys)


def test_serve_refuses_to_start_without_a_readable_server_key(tmp_path: Path) -> None:
    config = tmp_path / "app-config.yaml"
    missing = tmp_path / "nowhere.key_secret"
    remote = {"listen": "127.0.0.1:7400", "serverKey": str(missing), "allowedKeys": str(tmp_path)}
    config.write_text(yaml.safe_dump({"backend": {"workers": {"remote": remote}}}))
    done = subprocess.run(
        [sys.executable, "-m", "kernel.cli", "serve", "--config", str(config)],
        capture_output=True, text=True, timeout=60, env={**os.environ},
    )  # fmt: skip
    assert done.returncode == 2 and f"cannot read the CURVE certificate {missing}" in done.stderr
    assert "Traceback" not in done.stderr

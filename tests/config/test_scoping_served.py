"""Config scoping through ``kernel serve``: a worker gets only what its plugin may see (docs/trust-model.md).

Plugin ``peeker`` (tests/fixtures/peeker.py) shows what its ``root_config`` gives; plugin ``other``
runs beside it with a section of its own.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import yaml

from kernel.testing import KernelProcess, make_package, wait_for
from tests import plugins
from tests.conftest import TOKEN, base_config


def _site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    make_package(site, "kernel-test-peeker", {"test_peeker": plugins.PEEKER}, {"peeker": "test_peeker:plugin"})
    make_package(site, "kernel-test-other", {"test_other": plugins.OTHER}, {"other": "test_other:plugin"})
    return site


def _config(**workers: object) -> dict[str, Any]:
    config = base_config()
    config["backend"]["workers"].update(workers)
    config["backend"]["config"] = {"reload": {"enabled": True, "pollSeconds": 0.1}}
    config["backend"]["database"] = {"plugin": {"billing": {"connection": {"password": "billing-db-pw"}}}}
    config["peeker"] = {"greeting": "hi", "apiToken": "peeker-own-token"}
    config["other"] = {"upstreamPassword": "other-secret", "mode": "fast"}
    config["integrations"] = {
        "github": [{"host": "github.com", "token": "ghp-not-asked"}],
        "vault": {"url": "https://vault", "apiToken": "vault-asked"},
    }
    return config


def _peek(c: httpx.Client, key: str) -> dict[str, Any]:
    got: dict[str, Any] = c.get("/api/peeker/peek", params={"key": key}).json()
    return got


def test_a_worker_gets_only_what_its_plugin_may_see_and_the_reload_too(tmp_path: Path) -> None:
    config = _config()
    k = KernelProcess(config, paths=[_site(tmp_path)]).start()
    try:
        with httpx.Client(base_url=k.url, timeout=20) as c:
            # the attempt reaches the system: the gateway holds the external-access token and honours it
            assert c.get("/api/other/whoami", headers={"Authorization": f"Bearer {TOKEN}"}).status_code != 401
            whole = c.get("/api/peeker/whole").json()
            assert whole["peeker"] == {"greeting": "hi", "apiToken": "peeker-own-token"}  # its own, secrets too
            assert "other" not in whole and "externalAccess" not in whole["backend"]["auth"]
            assert "billing-db-pw" not in str(whole) and TOKEN not in str(whole) and "other-secret" not in str(whole)
            assert whole["backend"]["workers"]["heartbeatInterval"] == 0.2  # the runtime's settings arrive
            assert whole["integrations"] == {
                "github": [{"host": "github.com"}],
                "vault": {"url": "https://vault", "apiToken": "vault-asked"},
            }
            for key, why in [
                ("other.upstreamPassword", "another plugin's section; declare it in create_plugin(config_reads=...)"),
                ("backend.auth.externalAccess", "the gateway's alone, never a worker's"),
                ("backend.database.plugin.billing", "another plugin's database"),
                ("integrations.github.token", "a secret; declare it in create_plugin(config_secrets=...)"),
            ]:
                error = _peek(c, key)["error"]
                assert error.startswith(f"config key '{key}' is not visible to plugin 'peeker': it is {why}")
            assert _peek(c, "peeker.nothing") == {"value": None}  # never configured: absent, as ever

            config["other"]["mode"] = "slow"
            config["integrations"]["vault"]["url"] = "https://vault-2"
            k.config_path.write_text(yaml.safe_dump(config))
            wait_for(lambda: _peek(c, "integrations.vault.url").get("value") == "https://vault-2", 15, "no reload")
            assert "other" not in c.get("/api/peeker/whole").json()  # the reload is scoped too
    finally:
        k.stop()


def test_scoping_off_gives_the_whole_config(tmp_path: Path) -> None:
    k = KernelProcess(_config(scopeConfig=False), paths=[_site(tmp_path)]).start()
    try:
        with httpx.Client(base_url=k.url, timeout=20) as c:
            assert _peek(c, "other.upstreamPassword") == {"value": "other-secret"}
            assert _peek(c, "backend.auth.externalAccess")["value"][0]["options"]["token"] == TOKEN
    finally:
        k.stop()


def test_kernel_config_visible_prints_what_the_worker_gets(tmp_path: Path) -> None:
    site = _site(tmp_path)
    cfg = tmp_path / "app-config.yaml"
    cfg.write_text(yaml.safe_dump(_config()))
    env = {"PYTHONPATH": f"{site}:{Path.cwd()}", "PATH": "/usr/bin:/bin"}
    run = subprocess.run(
        [sys.executable, "-m", "kernel.cli", "config", "visible", "peeker", "--config", str(cfg)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    shown = yaml.safe_load(run.stdout)
    assert shown["peeker"] == {"greeting": "hi", "apiToken": "<secret>"}
    assert shown["integrations"]["vault"]["apiToken"] == "<secret>"
    assert "other" not in shown and "vault-asked" not in run.stdout and "other-secret" not in run.stdout
    assert "#   other: it is another plugin's section" in run.stdout
    assert "#   backend.auth.externalAccess: it is the gateway's alone, never a worker's" in run.stdout
    assert "#   integrations.github.token: it is a secret;" in run.stdout

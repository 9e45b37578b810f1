"""``kernel config check`` and ``kernel config print``, run as real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kernel.testing import make_package

VAULT = """
from typing import Annotated
import msgspec
from kernel.api import create_plugin

Secret = Annotated[str, msgspec.Meta(extra={"secret": True})]


class Upstream(msgspec.Struct, rename="camel"):
    url: str
    client_key: Secret | None = None


class VaultConfig(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    master_key: Secret
    port: int = 8200
    public_url: Annotated[str, msgspec.Meta(extra_json_schema={"visibility": "frontend"})] = ""
    upstreams: dict[str, Upstream] = {}


plugin = create_plugin("vault", config_schema=VaultConfig)


@plugin.init()
def init():
    pass
"""

GOOD = """
app:
  title: demo
backend:
  listen: {port: 7010}
  database:
    connection: {host: db, password: pg-secret-pw}
vault:
  masterKey: ${VAULT_KEY}
  port: "8300"
  upstreams:
    a: {url: "http://a", clientKey: ck-aaaa}
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("site")
    make_package(root, "kernel-test-vault", {"test_vault": VAULT}, {"vault": "test_vault:plugin"})
    return root


def run(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site), "VAULT_KEY": "mk-123456789"}
    return subprocess.run(
        [sys.executable, "-m", "kernel.cli", "config", *args],
        check=False,
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_check_passes_on_good_config(site: Path, tmp_path: Path) -> None:
    proc = run(site, tmp_path, "check", "--config", write(tmp_path, "app-config.yaml", GOOD))
    assert proc.returncode == 0, proc.stderr
    assert "config OK" in proc.stdout and "plugin schema(s) checked" in proc.stdout


def test_check_names_plugin_key_and_file(site: Path, tmp_path: Path) -> None:
    base = write(tmp_path, "base.yaml", GOOD)
    local = write(tmp_path, "local.yaml", "vault:\n  port: lots\n  extra: 1\n")
    proc = run(site, tmp_path, "check", "--config", base, "--config", local)
    assert proc.returncode == 2
    err = proc.stderr
    assert "plugin 'vault'" in err and "package 'kernel-test-vault'" in err
    assert "'vault.port'" in err and local in err and "Expected `int`, got `str`" in err


def test_check_reports_a_missing_required_field(site: Path, tmp_path: Path) -> None:
    proc = run(site, tmp_path, "check", "--config", write(tmp_path, "app-config.yaml", "app: {}\n"))
    assert proc.returncode == 2
    assert "'vault.masterKey'" in proc.stderr and "missing required field" in proc.stderr


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("backend:\n  gateway: {processes: 0}\n", "backend.gateway.processes"),
        ("backend:\n  listen: {port: nope}\n", "backend.listen.port"),
        ("backend:\n  listen: {port: 70000}\n", "backend.listen.port must be between 0 and 65535"),
        ("backend:\n  logging: {level: loud}\n", "backend.logging.level"),
        ("backend:\n  config: {reload: {intervalSeconds: -1}}\n", "backend.config.reload.intervalSeconds"),
        ("discovery:\n  endpoints: [{target: http://x}]\n", "discovery.endpoints"),
        ("backend:\n  cache: {maxItems: lots}\n", "backend.cache.maxItems"),
        ("backend:\n  auth: {externalAccess: [{type: static, options: {token: short, subject: x}}]}\n", "token"),
    ],
)
def test_check_validates_kernel_and_service_settings(site: Path, tmp_path: Path, text: str, key: str) -> None:
    proc = run(site, tmp_path, "check", "--config", write(tmp_path, "app-config.yaml", GOOD + text))
    assert proc.returncode == 2, proc.stdout
    assert key in proc.stderr, proc.stderr


def test_check_fails_on_a_config_that_does_not_load(site: Path, tmp_path: Path) -> None:
    proc = run(site, tmp_path, "check", "--config", str(tmp_path / "missing.yaml"))
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_print_redacts_secrets_as_yaml(site: Path, tmp_path: Path) -> None:
    proc = run(site, tmp_path, "print", "--config", write(tmp_path, "app-config.yaml", GOOD))
    assert proc.returncode == 0, proc.stderr
    data = yaml.safe_load(proc.stdout)
    assert data["vault"]["masterKey"] == "<secret>"  # marked secret in the plugin's schema
    assert data["vault"]["upstreams"]["a"] == {"url": "http://a", "clientKey": "<secret>"}
    assert data["vault"]["port"] == "8300"
    assert data["backend"]["database"]["connection"] == {"host": "db", "password": "<secret>"}  # by name
    assert data["app"] == {"title": "demo"}
    for secret in ("mk-123456789", "ck-aaaa", "pg-secret-pw"):
        assert secret not in proc.stdout


def test_print_json_merges_files_in_order(site: Path, tmp_path: Path) -> None:
    base = write(tmp_path, "base.yaml", GOOD)
    local = write(tmp_path, "local.yaml", "app: {title: local}\nvault: {masterKey: other-key-1}\n")
    proc = run(site, tmp_path, "print", "--json", "--config", base, "--config", local)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["app"]["title"] == "local" and data["vault"]["masterKey"] == "<secret>"
    assert "other-key-1" not in proc.stdout


def test_print_uses_conf_app_config_by_default(site: Path, tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    write(tmp_path / "conf", "app-config.yaml", "app: {title: from-conf}\n")
    proc = run(site, tmp_path, "print", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"app": {"title": "from-conf"}}


def test_check_says_which_files_it_loaded(site: Path, tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    write(tmp_path / "conf", "app-config.yaml", GOOD)
    proc = run(site, tmp_path, "check")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("config OK: conf/app-config.yaml (1 file), "), proc.stdout
    local = write(tmp_path, "local.yaml", "app: {title: local}\n")
    proc = run(site, tmp_path, "check", "--config", "conf/app-config.yaml", "--config", local)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"config OK: conf/app-config.yaml, {local} (2 files), "), proc.stdout


@pytest.mark.parametrize("command", ["check", "print"])
def test_no_config_file_is_a_clear_error(site: Path, tmp_path: Path, command: str) -> None:
    proc = run(site, tmp_path, command)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert str(tmp_path / "conf" / "app-config.yaml") in proc.stderr and "--config FILE" in proc.stderr


def test_print_fails_on_a_config_that_does_not_load(site: Path, tmp_path: Path) -> None:
    proc = run(site, tmp_path, "print", "--config", str(tmp_path / "missing.yaml"))
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_check_names_an_os_user_workers_cannot_run_as(site: Path, tmp_path: Path) -> None:
    base = write(tmp_path, "base.yaml", GOOD)
    local = write(
        tmp_path, "local.yaml", "backend:\n  workers:\n    plugins:\n      vault:\n        user: edges-no-such-user\n"
    )
    proc = run(site, tmp_path, "check", "--config", base, "--config", local)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "backend.workers.plugins.vault.user" in proc.stderr and "edges-no-such-user" in proc.stderr


def test_schema_is_everything_installed_in_one_document(site: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "kernel.cli", "config", "schema"],
        env={**os.environ, "PYTHONPATH": str(site)}, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    props = doc["properties"]
    backend = props["backend"]["properties"]
    assert {"listen", "gateway", "workers", "metrics", "tracing", "cors", "auth", "cache"} <= set(backend)
    assert backend["config"]["properties"]["reload"]["$ref"].startswith("#/$defs/kernel.")
    assert backend["baseUrl"]["visibility"] == "frontend"
    assert "endpoints" in props["discovery"]["properties"]  # declared by the built-in services
    vault = doc["$defs"][props["vault"]["$ref"].removeprefix("#/$defs/")]  # the installed plugin's own
    assert set(vault["properties"]) == {"masterKey", "port", "publicUrl", "upstreams"}
    assert vault["required"] == ["masterKey"]
    assert vault["properties"]["publicUrl"]["visibility"] == "frontend"

    def refs(node: object) -> list[str]:
        if isinstance(node, dict):
            return [*([node["$ref"]] if "$ref" in node else []), *(r for v in node.values() for r in refs(v))]
        return [r for v in node for r in refs(v)] if isinstance(node, list) else []

    assert {r.removeprefix("#/$defs/") for r in refs(doc)} <= set(doc["$defs"])  # every reference resolves
    as_yaml = subprocess.run(
        [sys.executable, "-m", "kernel.cli", "config", "schema", "--format", "yaml"],
        env={**os.environ, "PYTHONPATH": str(site)}, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert yaml.safe_load(as_yaml.stdout) == doc


def test_print_frontend_keeps_only_what_a_frontend_may_see(site: Path, tmp_path: Path) -> None:
    text = GOOD + "  publicUrl: https://vault.example.com\n"
    text = text.replace("app:\n  title: demo\n", "app:\n  title: demo\n  baseUrl: http://localhost:3000\n")
    proc = run(site, tmp_path, "print", "--frontend", "--json", "--config", write(tmp_path, "app-config.yaml", text))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "app": {"title": "demo", "baseUrl": "http://localhost:3000"},
        "vault": {"publicUrl": "https://vault.example.com"},
    }

"""`kernel serve` and `kernel plugins` on broken and healthy plugin packages."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from kernel.testing import KernelProcess, make_package, wait_for
from tests import plugins
from tests.conftest import base_config

BROKEN = {
    "bad-id": (plugins.BAD_ID, "kernel-test-badid", "invalid plugin id 'Bad_Id'"),
    "importer": (plugins.IMPORT_ERROR, "kernel-test-importer", "No module named 'this_module_does_not_exist'"),
    "needy": (plugins.UNKNOWN_DEP, "kernel-test-needy", "depends on service 'acme.frobnicator'"),
}


def _broken_site(root: Path, name: str) -> Path:
    source, dist, _ = BROKEN[name]
    module = "test_" + name.replace("-", "_")
    return make_package(root, dist, {module: source}, {name: f"{module}:plugin"})


def _run(args: list[str], paths: list[Path], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in paths)}
    return subprocess.run(
        [sys.executable, "-m", "kernel.cli", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_serve_names_the_broken_plugin_and_package(tmp_path: Path, site: Path, name: str) -> None:
    _broken_site(tmp_path, name)
    cfg = tmp_path / "app-config.yaml"
    cfg.write_text("backend: {listen: {port: 0}}\n")
    proc = _run(["serve", "--config", str(cfg)], [site, tmp_path])
    assert proc.returncode == 1
    _, dist, reason = BROKEN[name]
    plugin_name = "needy" if name == "needy" else name
    assert f"plugin '{plugin_name}' from package '{dist}'" in proc.stderr
    assert reason in proc.stderr


def test_continue_policy_serves_the_others(tmp_path: Path, site: Path) -> None:
    for name in BROKEN:
        _broken_site(tmp_path, name)
    config = base_config()
    config["backend"]["startup"] = {"default": {"onPluginBootFailure": "continue"}}
    k = KernelProcess(config, paths=[site, tmp_path]).start(wait=False)
    try:

        def all_broken_reported() -> dict[str, Any] | None:
            body = k.wait_ready(status=503)
            return body if set(body.get("plugins", {})) == set(BROKEN) else None

        body = wait_for(all_broken_reported, 20, "the broken plugins were not all reported")
        assert "invalid plugin id" in body["plugins"]["bad-id"]
        with httpx.Client(base_url=k.url) as c:
            assert c.get("/api/echo/pid").status_code == 200
            assert c.get("/api/needy/x").status_code == 503
        assert "kernel-test-importer" in k.output()
    finally:
        k.stop()


def test_duplicate_plugin_ids_are_refused(tmp_path: Path, site: Path) -> None:
    make_package(tmp_path, "kernel-test-echo-twin", {"twin_echo": plugins.ECHO}, {"echo": "twin_echo:plugin"})
    proc = _run(["plugins", "--json"], [site, tmp_path])
    report = json.loads(proc.stdout)
    assert proc.returncode == 0
    assert "echo" not in [p["id"] for p in report["plugins"]]
    (failure,) = [f for f in report["failures"] if f["name"] == "echo"]
    assert "duplicate plugin id 'echo'" in failure["reason"]
    assert {"kernel-test-echo", "kernel-test-echo-twin"} <= {failure["distribution"], *failure["reason"].split("'")}


def test_plugins_lists_id_distribution_version_module(site: Path) -> None:
    proc = _run(["plugins", "--json"], [site])
    assert proc.returncode == 0, proc.stderr
    rows = {p["id"]: p for p in json.loads(proc.stdout)["plugins"]}
    assert rows["echo"] == {"id": "echo", "distribution": "kernel-test-echo", "version": "0.1.0", "module": "test_echo"}
    text = _run(["plugins"], [site]).stdout
    assert re.search(r"^other +kernel-test-other 0\.1\.0  \(test_other\)$", text, re.M), text  # column width varies


def test_bad_config_is_a_readable_startup_error(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("backend:\n  gateway:\n    processes: lots\n")
    proc = _run(["serve", "--config", str(cfg)], [])
    assert proc.returncode == 2
    assert "backend.gateway.processes" in proc.stderr
    missing = _run(["serve", "--config", str(tmp_path / "nope.yaml")], [])
    assert missing.returncode == 2 and "nope.yaml" in missing.stderr


def test_abort_policy_stops_the_kernel_when_a_worker_cannot_boot(tmp_path: Path, site: Path) -> None:
    make_package(tmp_path, "kernel-test-crashy", {"test_crashy": plugins.CRASHY}, {"crashy": "test_crashy:plugin"})
    k = KernelProcess(base_config(), paths=[site, tmp_path]).start(wait=False)
    assert k.proc is not None
    assert k.proc.wait(20) == 1
    assert "plugin 'crashy' (package 'kernel-test-crashy') failed to start: worker exit code 7" in k.output()
    k.stop()


def test_bad_external_access_is_a_startup_error(tmp_path: Path) -> None:
    cfg = tmp_path / "app-config.yaml"
    cfg.write_text("backend:\n  auth:\n    externalAccess:\n      - type: static\n        options: {token: short}\n")
    proc = _run(["serve", "--config", str(cfg)], [])
    assert proc.returncode == 2
    assert "backend.auth.externalAccess[0].options.token" in proc.stderr

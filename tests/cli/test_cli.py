"""`kernel serve` and `kernel plugins` on broken and healthy plugin packages."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from kernel.testing import READINESS, KernelProcess, free_port, make_package, wait_for
from tests import plugins
from tests.conftest import TOKEN, base_config

BROKEN = {
    "bad-id": (plugins.BAD_ID, "kernel-test-badid", "invalid plugin id 'Bad_Id'"),
    "importer": (plugins.IMPORT_ERROR, "kernel-test-importer", "No module named 'this_module_does_not_exist'"),
    "needy": (plugins.UNKNOWN_DEP, "kernel-test-needy", "depends on service 'acme.frobnicator'"),
}


def _broken_site(root: Path, name: str) -> Path:
    source, dist, _ = BROKEN[name]
    module = "test_" + name.replace("-", "_")
    return make_package(root, dist, {module: source}, {name: f"{module}:plugin"})


def _run(
    args: list[str], paths: list[Path], timeout: float = 30, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **(env or {}), "PYTHONPATH": os.pathsep.join(str(p) for p in paths)}
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
            body = k.wait_ready(status=200)
            return body if set(body.get("failed", {})) == set(BROKEN) else None

        body = wait_for(all_broken_reported, 20, "the broken plugins were not all reported")
        assert body["status"] == "ok"  # plugins allowed to fail keep no one out of the load balancer
        assert "invalid plugin id" in body["failed"]["bad-id"]
        with httpx.Client(base_url=k.url) as c:
            assert c.get("/api/echo/pid").status_code == 200
            assert c.get("/api/needy/x").status_code == 503
            live = c.get("/.kernel/health/v1/liveness")
            assert live.status_code == 200 and set(live.json()["failed"]) == set(BROKEN)
            meta = c.get("/.kernel/instance/v1/plugins", headers={"Authorization": f"Bearer {TOKEN}"}).json()
            rows = {p["id"]: p for p in meta["plugins"]}
            assert rows["bad-id"]["state"] == "failed" and "invalid plugin id" in rows["bad-id"]["reason"]
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
    assert rows["echo"] == {
        "id": "echo",
        "distribution": "kernel-test-echo",
        "version": "0.1.0",
        "module": "test_echo",
        "modules": [],
    }
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


@pytest.mark.parametrize("port", ["70000", "-1"])
def test_a_port_out_of_range_is_a_config_error(tmp_path: Path, port: str) -> None:
    cfg = tmp_path / "app-config.yaml"
    cfg.write_text("backend:\n  listen:\n    port: ${PORT}\n")  # as conf/app-config.yaml
    for command in (["serve"], ["config", "check"]):
        proc = _run([*command, "--config", str(cfg)], [], env={"PORT": port})
        assert proc.returncode == 2, proc.stderr
        assert "backend.listen.port must be between 0 and 65535" in proc.stderr and port in proc.stderr
        assert "Traceback" not in proc.stderr


def test_port_0_logs_the_port_the_listener_got(site: Path) -> None:
    k = KernelProcess(base_config(), paths=[site], env={"APP_CONFIG_backend_listen_port": "0"}).start(wait=False)
    try:
        found = wait_for(
            lambda: re.search(r"kernel listening on http://127\.0\.0\.1:(\d+) ", k.output()),
            20,
            lambda: f"no listening line\n{k.output()}",
        )
        port = int(found.group(1))
        assert port != 0
        k.port = port
        k.wait_ready()
    finally:
        k.stop()


def test_ctrl_c_exits_130_and_sigterm_0(site: Path) -> None:
    k = KernelProcess(base_config(), paths=[site]).start()
    assert k.proc is not None
    k.proc.send_signal(signal.SIGINT)
    assert k.proc.wait(30) == 130, k.output()
    assert k.stop() == 130
    k = KernelProcess(base_config(), paths=[site]).start()
    assert k.stop() == 0  # SIGTERM: a process manager's normal stop


def test_serve_without_a_config_file_runs_on_the_defaults_and_says_so(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "APP_CONFIG_backend_listen_host": "127.0.0.1", "APP_CONFIG_backend_listen_port": str(port)}
    log = tmp_path / "kernel.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kernel.cli", "serve"], env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT
        )
    try:

        def ready() -> bool:
            assert proc.poll() is None, log.read_text()
            with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
                return c.get(READINESS).status_code == 200

        wait_for(ready, 30, lambda: f"never ready\n{log.read_text()}", ignore=(httpx.HTTPError,))
        lines = [line for line in log.read_text().splitlines() if "no config file loaded" in line]
        assert len(lines) == 1, log.read_text()
        assert str(tmp_path / "conf" / "app-config.yaml") in lines[0] and "--config" in lines[0]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0

"""kernel.plugin_scan: plugins are imported in a child process; one that exits, hangs or crashes the
interpreter at import is named by plugin and package, and never takes the kernel down with it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from kernel.errors import BootError
from kernel.plugin_scan.parent import discover
from kernel.plugin_scan.spawn import TIMEOUT_ENV
from kernel.testing import KernelProcess, make_package
from tests import plugins
from tests.conftest import base_config

#: seconds a step of the discovery may take here: the hanging plugin costs this much per run
TIMEOUT = "3"

#: plugin id -> (fixture, package, what the failure says)
BAD = {
    "exits": (plugins.EXITS_AT_IMPORT, "kernel-test-exits", "import of 'test_exits:plugin' exited with code 3"),
    "hangs": (
        plugins.HANGS_AT_IMPORT,
        "kernel-test-hangs",
        f"import of 'test_hangs:plugin' did not finish within {TIMEOUT}s (the discovery child was killed)",
    ),
    "segv": (
        plugins.CRASHES_AT_IMPORT,
        "kernel-test-segv",
        "import of 'test_segv:plugin' was killed by signal SIGSEGV",
    ),
}


def _bad_site(root: Path, *names: str) -> Path:
    for name in names:
        source, dist, _ = BAD[name]
        make_package(root, dist, {f"test_{name}": source}, {name: f"test_{name}:plugin"})
    return root


def _marker_site(root: Path) -> Path:
    return make_package(
        root, "kernel-test-marker", {"test_marker": plugins.MARKS_IMPORT}, {"marker": "test_marker:plugin"}
    )


def _env(paths: list[Path], **extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in paths), TIMEOUT_ENV: TIMEOUT, **extra}


def _kernel(args: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kernel.cli", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def _named(name: str) -> str:
    _, dist, reason = BAD[name]
    return f"plugin '{name}' from package '{dist}': {reason}"


def test_continue_serves_the_others_and_names_each_bad_import(tmp_path: Path, site: Path) -> None:
    _bad_site(tmp_path, *BAD)
    config = base_config()
    config["backend"]["startup"] = {"default": {"onPluginBootFailure": "continue"}}
    k = KernelProcess(config, paths=[site, tmp_path], env={TIMEOUT_ENV: TIMEOUT}).start(timeout=40)
    try:
        body = k.wait_ready(status=200)
        assert set(body["failed"]) == set(BAD), body
        for name in BAD:
            assert _named(name) in body["failed"][name]
        with httpx.Client(base_url=k.url) as c:
            assert c.get("/api/echo/pid").status_code == 200
            assert c.get("/api/other/ping").status_code == 200
            for name in BAD:
                assert c.get(f"/api/{name}/anything").status_code == 503
        assert k.proc is not None and k.proc.poll() is None
    finally:
        k.stop()
    for name in BAD:
        assert f"{_named(name)} (continuing: onPluginBootFailure is 'continue')" in k.output()


@pytest.mark.parametrize("name", sorted(BAD))
def test_abort_exits_non_zero_naming_plugin_and_package(tmp_path: Path, site: Path, name: str) -> None:
    _bad_site(tmp_path, name)
    cfg = tmp_path / "app-config.yaml"
    cfg.write_text("backend: {listen: {port: 0}}\n")
    proc = _kernel(["serve", "--config", str(cfg)], _env([site, tmp_path]))
    assert proc.returncode == 1, proc.stderr
    assert "kernel: cannot start:" in proc.stderr
    assert f"  - {_named(name)}" in proc.stderr
    assert "onPluginBootFailure: continue" in proc.stderr  # how to go on without it


def test_plugins_lists_the_good_and_names_the_bad(tmp_path: Path, site: Path) -> None:
    _bad_site(tmp_path, *BAD)
    proc = _kernel(["plugins"], _env([site, tmp_path]))
    assert proc.returncode == 1, proc.stderr
    listed = {line.split()[0] for line in proc.stdout.splitlines() if not line.startswith("FAILED")}
    assert {"echo", "other"} <= listed and not listed & set(BAD)
    for name in BAD:
        assert f"FAILED {_named(name)}" in proc.stdout
    report = json.loads(_kernel(["plugins", "--json"], _env([site, tmp_path])).stdout)
    failures = {f["name"]: f for f in report["failures"]}
    assert set(failures) >= set(BAD)
    assert failures["segv"]["distribution"] == "kernel-test-segv"
    assert "kernel:kernel-cli" in report["providers"]  # the hook providers still load (in the command)


def test_the_kernel_process_never_imports_a_plugin(tmp_path: Path, site: Path) -> None:
    """Only children import plugin modules: the discovery child and the plugin's own worker."""
    _marker_site(tmp_path)
    marker = tmp_path / "imports.txt"
    k = KernelProcess(base_config(), paths=[site, tmp_path], env={"KERNEL_TEST_IMPORT_MARKER": str(marker)}).start()
    try:
        with httpx.Client(base_url=k.url) as c:
            worker = c.get("/api/marker/pid").json()["pid"]
        assert k.proc is not None
        imports = [tuple(map(int, line.split())) for line in marker.read_text().splitlines()]
        importers = {pid for pid, _ in imports}
        assert k.proc.pid not in importers, imports
        assert worker in importers
        assert all(parent == k.proc.pid for _, parent in imports), imports  # the kernel's children, no one else
        assert "test_marker imported" in k.output()  # its print went to stderr, not into the report
    finally:
        k.stop()
    marker.unlink()
    for command in (["plugins"], ["config", "print"], ["config", "check"]):
        cfg = tmp_path / "app-config.yaml"
        cfg.write_text("app: {title: t}\n")
        proc = subprocess.Popen(
            [sys.executable, "-m", "kernel.cli", *command, *(["--config", str(cfg)] if command[0] == "config" else [])],
            env=_env([site, tmp_path], KERNEL_TEST_IMPORT_MARKER=str(marker)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, (command, out, err)
        imports = [tuple(map(int, line.split())) for line in marker.read_text().splitlines()]
        assert imports and all(pid != proc.pid and parent == proc.pid for pid, parent in imports), (command, imports)
        marker.unlink()


def test_discovery_runs_again_without_each_culprit(tmp_path: Path, site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _bad_site(tmp_path, *BAD)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), str(tmp_path)]))
    report = discover(timeout=float(TIMEOUT))
    assert {"echo", "other"} <= {p.id for p in report.plugins}
    failures = {f.name: f for f in report.failures if f.name in BAD}
    assert {name: str(f) for name, f in failures.items()} == {name: _named(name) for name in BAD}
    echo = next(p for p in report.plugins if p.id == "echo")
    assert (echo.distribution, echo.module, echo.entry_point) == (
        "kernel-test-echo",
        "test_echo",
        "echo = test_echo:plugin",
    )
    assert "kernel-cli = kernel.cli.commands" in report.provider_eps


def test_a_crashing_provider_is_named_and_the_command_still_works(tmp_path: Path, site: Path) -> None:
    """A hook provider that dies at import is found by the discovery child; the command never imports it."""
    make_package(
        tmp_path, "kernel-test-bad-hooks", {"test_bad_hooks": plugins.EXITS_AT_IMPORT}, {"bad-hooks": "test_bad_hooks"}
    )
    proc = _kernel(["plugins"], _env([site, tmp_path]))
    assert proc.returncode == 1, proc.stderr
    assert (
        "FAILED plugin 'bad-hooks' from package 'kernel-test-bad-hooks': import of 'test_bad_hooks' exited with code 3"
        in proc.stdout
    )
    assert any(line.startswith("echo ") for line in proc.stdout.splitlines())


def test_config_check_skips_what_the_first_discovery_lost(tmp_path: Path, site: Path) -> None:
    """``config check`` discovers twice (the second time with the config): a hung import is waited for once."""
    _bad_site(tmp_path, "hangs")
    cfg = tmp_path / "app-config.yaml"
    cfg.write_text("app: {title: t}\n")
    proc = _kernel(["config", "check", "--config", str(cfg)], _env([site, tmp_path]))
    assert proc.returncode == 0, proc.stderr
    assert f"warning: {_named('hangs')} (its config was not checked)" in proc.stderr
    assert proc.stderr.count("Timeout (") == 1, proc.stderr  # the stack dump before the one kill


@pytest.mark.parametrize(
    ("code", "says"),
    [
        ("import sys; sys.exit(5)", "the start of the discovery child exited with code 5"),
        ("print('not a frame')", "the start of the discovery child wrote something other than a frame"),
        ("import time; time.sleep(30)", "the start of the discovery child did not finish within 0.5s"),
    ],
)
def test_a_discovery_that_fails_with_no_package_to_blame_is_an_error(code: str, says: str) -> None:
    """Before its first step the child runs only the kernel's code: nothing to skip, a clear error."""
    first = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    with pytest.raises(BootError, match="the installed packages could not be discovered") as caught:
        discover(timeout=0.5, first=first)
    assert says in str(caught.value)
    assert first.poll() is not None  # never left behind

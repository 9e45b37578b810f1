"""``kernel new``: a generated plugin installs, passes its own tests at once and is served; a generated module
passes its tests; the interactive form works on a terminal; mistakes are named.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import httpx

from kernel.testing import KernelProcess
from tests.conftest import base_config


def kernel_new(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kernel.cli", "new", *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def run_its_tests(package: Path) -> subprocess.CompletedProcess[str]:
    """The generated package's own test suite, as its author runs it (``pytest`` in its folder)."""
    env = {**os.environ, "PYTHONPATH": str(package)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=package, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_a_generated_plugin_passes_its_tests_installs_and_is_served(tmp_path: Path) -> None:
    made = kernel_new(
        "--select", "backend-plugin", "--option", "pluginId=todo", "--option", "owner=team-a", cwd=tmp_path
    )
    assert made.returncode == 0, made.stderr
    package = tmp_path / "todo-backend"
    assert f"pip install -e {Path('todo-backend')}" in made.stdout
    assert "owner: team-a" in (package / "pyproject.toml").read_text()
    tests = run_its_tests(package)
    assert tests.returncode == 0 and "4 passed" in tests.stdout, tests.stdout + tests.stderr

    site = tmp_path / "site"  # a real install of the package (its wheel, entry point and all)
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
         str(package)],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert pip.returncode == 0, pip.stderr
    with KernelProcess(base_config(), paths=[site]) as k, httpx.Client(base_url=k.url, timeout=10) as c:
        assert c.get("/api/todo/health").json() == {"status": "ok"}
        assert c.get("/api/todo/items").status_code == 401


def test_a_generated_module_passes_its_tests(tmp_path: Path) -> None:
    made = kernel_new(
        "--select", "backend-plugin-module", "--option", "pluginId=catalog", "--option", "moduleId=github", cwd=tmp_path
    )
    assert made.returncode == 0, made.stderr
    package = tmp_path / "catalog-backend-module-github"
    assert (
        'catalog-github = "kernel_plugin_catalog_backend_module_github.module:module"'
        in (package / "pyproject.toml").read_text()
    )
    tests = run_its_tests(package)
    assert tests.returncode == 0 and "1 passed" in tests.stdout, tests.stdout + tests.stderr


def test_mistakes_are_named(tmp_path: Path) -> None:
    unknown = kernel_new("--select", "frontend-plugin", cwd=tmp_path)
    assert unknown.returncode == 2 and "no template 'frontend-plugin'" in unknown.stderr
    missing = kernel_new("--select", "backend-plugin", cwd=tmp_path)
    assert missing.returncode == 2 and "option pluginId is missing" in missing.stderr
    bad = kernel_new("--select", "backend-plugin", "--option", "pluginId=Todo_App", cwd=tmp_path)
    assert bad.returncode == 2 and "pluginId 'Todo_App' must be lowercase" in bad.stderr
    no_select = kernel_new(cwd=tmp_path)  # stdin is not a terminal here
    assert no_select.returncode == 2 and "choose a template with --select" in no_select.stderr
    assert kernel_new("--select", "backend-plugin", "--option", "pluginId=twice", cwd=tmp_path).returncode == 0
    again = kernel_new("--select", "backend-plugin", "--option", "pluginId=twice", cwd=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr


def test_interactive_on_a_terminal(tmp_path: Path) -> None:
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kernel.cli", "new"], cwd=tmp_path, stdin=slave, stdout=slave, stderr=slave
    )
    os.close(slave)
    seen = b""

    def answer_when(prompt: bytes, answer: str) -> None:
        nonlocal seen
        deadline = time.monotonic() + 30
        while prompt not in seen:
            assert time.monotonic() < deadline, f"no prompt {prompt!r}; got {seen!r}"
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                seen += os.read(master, 4096)
        seen = seen[seen.index(prompt) + len(prompt) :]
        os.write(master, answer.encode() + b"\n")

    try:
        answer_when(b"Choose 1-2 or a name:", "1")
        answer_when(b"ID of the plugin", "Not An Id")  # refused, asked again
        answer_when(b"ID of the plugin", "tech-radar")
        answer_when(b"Owner of the package", "")
        assert proc.wait(30) == 0
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    assert (tmp_path / "tech-radar-backend" / "kernel_plugin_tech_radar_backend" / "router.py").exists()
    assert "owner" not in (tmp_path / "tech-radar-backend" / "pyproject.toml").read_text()

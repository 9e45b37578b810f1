"""Modules and extension points: a module runs in its plugin's worker, before the plugin, through the
extension points the plugin (or another module) registered; every declaration error is named.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from kernel.testing import KernelProcess, make_package, wait_for
from tests import plugins
from tests.conftest import base_config

SOURCES = {"test_catalog": plugins.CATALOG, "test_catalog_modules": plugins.CATALOG_MODULES}


def catalog_site(root: Path, *modules: str, plugins_too: tuple[str, ...] = ()) -> Path:
    """The ``catalog`` plugin with the named modules (and plugins) of ``catalog_modules.py`` installed."""
    eps = {"catalog": "test_catalog:plugin", **{f"catalog-{m}": f"test_catalog_modules:{m}" for m in modules}}
    eps.update({p: f"test_catalog_modules:{p}" for p in plugins_too})
    return make_package(root, "kernel-test-catalog", SOURCES, eps)


def kernel_cli(args: list[str], site: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run(
        [sys.executable, "-m", "kernel.cli", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_modules_start_before_their_plugin_through_its_extension_points(tmp_path: Path) -> None:
    site = catalog_site(tmp_path, "github", "scoring", "boost", "broken", "lost", "orphan")
    config = base_config()
    allowed = {"onPluginModuleBootFailure": "continue"}
    config["backend"]["startup"] = {"plugins": {"catalog": {"modules": {"broken": allowed, "lost": allowed}}}}
    with KernelProcess(config, paths=[site]) as k, httpx.Client(base_url=k.url, timeout=10) as c:
        processors = c.get("/api/catalog/processors").json()["processors"]
        # scoring provides catalog.scoring, so it starts after boost, which uses it; the plugin starts last
        assert sorted(processors[:-1]) == ["github", "scoring:boosted"]
        assert processors[-1] == "catalog"

        late = c.get("/api/catalog/github/late")  # the module kept the extension point for later
        assert late.status_code == 500
        assert "used extension point 'catalog.processing' after the plugin started" in late.json()["error"]["message"]
        assert "late" not in c.get("/api/catalog/processors").json()["processors"]

        registered = c.post("/api/catalog/late-extension-point")
        assert registered.status_code == 500
        assert "extension point 'catalog.late' registered after start-up" in registered.json()["error"]["message"]

        log = k.output()
        assert "Module 'broken' for plugin 'catalog' startup failed; caused by RuntimeError(" in log
        assert "onPluginModuleBootFailure is 'continue'" in log
        assert "module 'lost' for plugin 'catalog'" in log and "extensionPoint{catalog.nothing}" in log
        assert "extends plugin 'nosuch', which is not installed: the module is not loaded" in log


def test_declaration_errors_are_named_before_anything_starts(tmp_path: Path) -> None:
    site = catalog_site(tmp_path, "github", "lost", "thief", plugins_too=("hoarder",))
    make_package(tmp_path, "kernel-test-catalog-again", {}, {"catalog-github-again": "test_catalog_modules:github"})
    proc = kernel_cli(["plugins"], site)
    assert proc.returncode == 1
    out = proc.stdout
    assert (
        "Illegal dependency: Module 'thief' for plugin 'catalog' attempted to depend on extension point "
        "'other.secrets' for plugin 'hoarder'. Extension points can only be used within their plugin's scope." in out
    )
    assert (
        "Service or extension point dependencies of module 'lost' for plugin 'catalog' are missing for the "
        "following ref(s): extensionPoint{catalog.nothing}" in out
    )
    assert "Module 'github' for plugin 'catalog' is already registered" in out
    assert "modules: github (kernel-test-catalog)" in out  # the module that did load is listed with its plugin


def test_a_failing_module_fails_its_plugin_by_default(tmp_path: Path) -> None:
    site = catalog_site(tmp_path, "github", "broken")
    k = KernelProcess(base_config(), paths=[site]).start(wait=False)
    try:
        assert k.proc is not None
        wait_for(lambda: k.proc is not None and k.proc.poll() is not None, 30, "the kernel kept running")
        assert k.proc.returncode != 0
        out = k.output()
        assert "Module 'broken' for plugin 'catalog' startup failed; caused by RuntimeError(" in out
    finally:
        k.stop()


def test_module_policy_also_covers_declaration_failures_at_serve(tmp_path: Path) -> None:
    site = catalog_site(tmp_path, "github", "lost")
    cfg = tmp_path / "app-config.yaml"
    cfg.write_text("backend: {listen: {port: 0}}\n")
    proc = kernel_cli(["serve", "--config", str(cfg)], site)
    assert proc.returncode == 1  # abort by default: the module's failure stops start-up, named
    assert "module 'lost' for plugin 'catalog' from package 'kernel-test-catalog'" in proc.stderr

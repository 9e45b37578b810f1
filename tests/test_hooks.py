"""The hooks of kernel/hookspecs.py, each used by a real package in a real kernel, and documented."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import httpx

from kernel import hookspecs
from kernel.testing import KernelProcess, make_package
from tests import plugins
from tests.conftest import base_config

ROOT = Path(__file__).resolve().parent.parent


def _hooks() -> list[str]:
    return [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("kernel_")]


def test_every_hook_is_typed_and_documented() -> None:
    readme = (ROOT / "README.md").read_text()
    assert _hooks() == ["kernel_provide_services", "kernel_register_routes"]
    for name in _hooks():
        fn = getattr(hookspecs, name)
        assert fn.__doc__ and fn.__doc__.strip(), name
        assert "return" in fn.__annotations__, name
        assert f"`{name}(" in readme, f"{name} is not in the README"


def test_a_package_overrides_a_core_service_provides_its_own_and_adds_routes(site: Path, tmp_path: Path) -> None:
    make_package(tmp_path, "acme-services", {"acme_services": plugins.PROVIDER}, {"acme": "acme_services"})
    make_package(
        tmp_path, "kernel-test-consumer", {"test_consumer": plugins.CONSUMER}, {"consumer": "test_consumer:plugin"}
    )
    with KernelProcess(base_config(), paths=[site, tmp_path]) as k, httpx.Client(base_url=k.url) as c:
        got = c.get("/api/consumer/show").json()
        assert got == {"cache": "from acme cache of consumer", "greeting": "greetings, you"}
        # kernel_register_routes reaches every plugin's router, in its own worker
        assert c.get("/api/consumer/.acme/stamp").json() == {"stamped": "consumer"}
        assert c.get("/api/echo/.acme/stamp").json() == {"stamped": "echo"}


def test_a_cycle_between_services_stops_startup(tmp_path: Path) -> None:
    make_package(tmp_path, "loop-services", {"loop_services": plugins.CYCLE}, {"loop": "loop_services"})
    cfg = tmp_path / "c.yaml"
    cfg.write_text("backend: {listen: {port: 0}}\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "kernel.cli", "serve", "--config", str(cfg)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1
    assert "circular service dependency: loop.a -> loop.b -> loop.a" in proc.stderr

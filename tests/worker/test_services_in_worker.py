"""Config (with reload), discovery and lifecycle used from plugin code in a real worker."""

from __future__ import annotations

from pathlib import Path

import httpx
import yaml

from kernel.testing import KernelProcess, make_package, wait_for
from tests import plugins
from tests.conftest import base_config


def test_config_reload_discovery_and_lifecycle_in_a_worker(tmp_path: Path) -> None:
    make_package(
        tmp_path, "kernel-test-serviced", {"test_serviced": plugins.SERVICED}, {"serviced": "test_serviced:plugin"}
    )
    config = base_config()
    config["backend"]["baseUrl"] = "https://portal.example.com"
    config["backend"]["config"] = {"reload": {"enabled": True, "pollSeconds": 0.1}}
    config["serviced"] = {"greeting": "hello"}
    k = KernelProcess(config, paths=[tmp_path]).start()
    try:
        with httpx.Client(base_url=k.url, timeout=10) as c:
            got = c.get("/api/serviced/show").json()
            assert got["greeting"] == "hello" and got["startup"] is True
            assert got["internal"] == f"http://127.0.0.1:{k.port}/api/catalog"
            assert got["external"] == "https://portal.example.com/api/catalog"

            config["serviced"] = {"greeting": "bonjour"}
            k.config_path.write_text(yaml.safe_dump(config))
            got = wait_for(
                lambda: (now := c.get("/api/serviced/show").json())["greeting"] == "bonjour" and now,
                10,
                "the worker did not see the reloaded config",
                interval=0.1,
            )
            assert got["changes"] == ["bonjour"]
    finally:
        k.stop()

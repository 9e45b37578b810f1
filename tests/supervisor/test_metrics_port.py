"""Two kernels on one host: the metrics port a first kernel holds, met by a second one.

In development the second takes a free port and says which; in production it stops, naming the setting.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kernel.testing import KernelProcess, wait_for
from kernel.testing.processes import free_port
from tests.conftest import base_config


@pytest.fixture(scope="module")
def first(site: Path) -> Iterator[KernelProcess]:
    k = KernelProcess(base_config(), paths=[site]).start()
    yield k
    k.stop()


def config_on(port: int) -> dict[str, object]:
    config = base_config()
    config["backend"]["metrics"] = {"port": port}  # type: ignore[index]
    return config


def test_a_development_kernel_takes_a_free_metrics_port_and_logs_it(first: KernelProcess, site: Path) -> None:
    assert httpx.get(first.metrics_url, timeout=10).status_code == 200  # the port is held
    second = KernelProcess(config_on(first.metrics_port or 0), paths=[site], env={"KERNEL_ENV": "development"})
    with second:
        line = re.compile(r"using the free port (\d+) instead")
        wait_for(lambda: line.search(second.output()), timeout=10, message="the fallback logged")
        match = line.search(second.output())
        assert match is not None
        port = int(match.group(1))
        assert port != first.metrics_port
        assert "backend.metrics.port" in second.output()
        assert f"metrics on http://127.0.0.1:{port}/metrics" in second.output()
        # both kernels serve their own metrics, each on its own port
        own = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert own.status_code == 200 and "kernel_plugin_state" in own.text
        assert httpx.get(second.url + "/api/echo/ping", timeout=10).status_code in (200, 401)
    assert httpx.get(first.metrics_url, timeout=10).status_code == 200


def test_a_production_kernel_stops_naming_the_setting(first: KernelProcess, site: Path) -> None:
    second = KernelProcess(config_on(first.metrics_port or 0), paths=[site], env={"KERNEL_ENV": "production"})
    second.start(wait=False)
    assert second.proc is not None
    assert second.proc.wait(20) == 1
    second.stop()
    out = second.output()
    assert f"cannot listen on 127.0.0.1:{first.metrics_port} for metrics (backend.metrics.port)" in out
    assert "--dev" in out  # the way out is named
    assert httpx.get(first.metrics_url, timeout=10).status_code == 200  # the first one never noticed


def test_a_free_port_is_not_moved(site: Path) -> None:
    port = free_port()
    with KernelProcess(config_on(port), paths=[site], env={"KERNEL_ENV": "development"}) as k:
        assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).status_code == 200
        assert "using the free port" not in k.output()

"""Root health endpoints reflect each plugin's workers and the plugins' own checks; instance metadata."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx

from kernel.testing import KernelProcess, make_package
from tests import plugins
from tests.conftest import RESTRICTED_TOKEN, TOKEN, assert_error_shape, base_config


def _wait(k: KernelProcess, status: int) -> dict[str, object]:
    return k.wait_ready(timeout=10, status=status)


def test_plugin_readiness_check_and_instance_metadata(site: Path, tmp_path: Path) -> None:
    make_package(tmp_path, "kernel-test-moody", {"test_moody": plugins.MOODY}, {"moody": "test_moody:plugin"})
    with KernelProcess(base_config(), paths=[site, tmp_path]) as k, httpx.Client(base_url=k.url) as c:
        assert c.post("/api/moody/toggle?ready=0").status_code == 200
        body = _wait(k, 503)
        assert body["plugins"] == {"moody": "failing readiness checks: mood"}
        assert c.get("/api/echo/pid").status_code == 200  # the others still serve
        # an unready worker gets no traffic: the route answers 503 until the check passes again
        assert_error_shape(c.post("/api/moody/toggle?ready=1"), 503, "ServiceUnavailableError")

        assert_error_shape(c.get("/.kernel/instance/v1/plugins"), 401, "AuthenticationError")
        meta = c.get("/.kernel/instance/v1/plugins", headers={"Authorization": f"Bearer {TOKEN}"}).json()
        rows = {p["id"]: p for p in meta["plugins"]}
        assert rows["echo"]["distribution"] == "kernel-test-echo" and rows["echo"]["version"] == "0.1.0"
        assert list(rows["echo"]["workers"].values()) == ["ready"]
        assert list(rows["moody"]["workers"].values()) == ["unready: failing readiness checks: mood"]
        assert meta["kernel"]["version"]


def test_kernel_plugins_reports_a_running_instance(kernel: KernelProcess) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "kernel.cli", "plugins", "--url", kernel.url, *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30)

    denied = run()
    assert denied.returncode == 1 and "answered 401" in denied.stderr
    table = run("--token", TOKEN)
    assert table.returncode == 0, table.stderr
    echo_line = next(line for line in table.stdout.splitlines() if line.startswith("echo "))
    assert "ready" in echo_line and "echo." in echo_line
    report = json.loads(run("--token", TOKEN, "--json").stdout)
    assert {"echo", "other"} <= {p["id"] for p in report["plugins"]}


def test_a_token_restricted_to_plugins_is_told_so_at_the_instance_endpoint(kernel: KernelProcess) -> None:
    with httpx.Client(base_url=kernel.url) as c:
        restricted = {"Authorization": f"Bearer {RESTRICTED_TOKEN}"}
        body = assert_error_shape(c.get("/.kernel/instance/v1/plugins", headers=restricted), 403, "NotAllowedError")
        message = body["error"]["message"]  # type: ignore[index]
        assert message == (
            "This token may only access plugins: other; not the kernel's own endpoints, such as its instance metadata"
        )
        body = assert_error_shape(c.get("/api/echo/private/whoami", headers=restricted), 403, "NotAllowedError")
        assert body["error"]["message"] == "This token may not access plugin 'echo'"  # type: ignore[index]


def test_a_wrong_method_on_a_root_route_is_405_in_the_error_shape(kernel: KernelProcess) -> None:
    resp = httpx.post(f"{kernel.url}/.kernel/health/v1/liveness", timeout=10)
    assert resp.status_code == 405 and set(resp.headers["allow"].split(", ")) == {"GET", "HEAD"}
    assert resp.json()["error"]["name"] == "MethodNotAllowedError"
    assert "gateway error" not in kernel.output()  # an answer, not a failure with a traceback

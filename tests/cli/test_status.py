"""``kernel status`` against a real kernel: the table, ``--json``, the address from the config, and refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from kernel.testing import KernelProcess, free_port
from tests.dashboard.support import (
    BROKEN,
    BROKEN_REASON,
    OPERATOR_TOKEN,
    VIEWER_TOKEN,
    plugin_of,
    snapshot,
    start_kernel,
)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelProcess]:
    k = start_kernel(tmp_path_factory.mktemp("status-site"))
    yield k
    k.stop()


def status(*args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "KERNEL_TOKEN"}
    if token is not None:
        env["KERNEL_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "kernel.cli", "status", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_the_table_lists_each_plugin_with_its_worker_pid_and_figures(kernel: KernelProcess) -> None:
    echo = plugin_of(snapshot(kernel), "echo")["workers"][0]
    proc = status("--url", kernel.url, "--token", OPERATOR_TOKEN)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"kernel 0.1.0 at {kernel.url} · up ") and "1 gateway" in lines[0]
    header = next(line for line in lines if line.startswith("PLUGIN"))
    assert header.split() == [
        "PLUGIN", "WORKER", "PID", "STATE", "RSS", "CPU", "IN-FLIGHT", "REQ/S", "P50", "P99", "RESTARTS"
    ]  # fmt: skip
    row = next(line for line in lines if line.startswith("echo "))
    cells = row.split()
    assert cells[:4] == ["echo", echo["id"], str(echo["pid"]), "ready"]
    assert cells[5] == "MiB" and float(cells[4]) > 0  # RSS
    assert cells[6].endswith("%")  # CPU, from two samples
    assert cells[-1] == "0"  # restarts
    assert any(line.startswith("metered ") for line in lines)
    failed = lines.index(next(line for line in lines if line.startswith("FAILED PLUGIN")))
    assert lines[failed + 1].split()[0] == BROKEN and BROKEN_REASON in lines[failed + 1]
    assert any(line.split()[:1] == ["supervisor"] and line.split()[1] == str(kernel.proc.pid) for line in lines)  # type: ignore[union-attr]


def test_json_is_the_raw_snapshot_and_the_token_may_come_from_the_environment(kernel: KernelProcess) -> None:
    proc = status("--url", kernel.url, "--json", token=OPERATOR_TOKEN)
    assert proc.returncode == 0, proc.stderr
    body = json.loads(proc.stdout)
    assert {"kernel", "plugins", "failed", "supervisor", "gateways", "recentErrors", "sampledAt"} <= set(body)
    assert plugin_of(body, "echo")["workers"][0]["pid"] == plugin_of(snapshot(kernel), "echo")["workers"][0]["pid"]


def test_without_url_the_address_comes_from_backend_listen_of_the_config(kernel: KernelProcess, tmp_path: Path) -> None:
    config = tmp_path / "app-config.yaml"
    config.write_text(yaml.safe_dump({"backend": {"listen": {"host": "0.0.0.0", "port": kernel.port}}}))
    proc = status("--config", str(config), "--token", OPERATOR_TOKEN)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"kernel 0.1.0 at http://127.0.0.1:{kernel.port} ")


def test_a_refused_token_is_one_line_and_exit_1(kernel: KernelProcess) -> None:
    wrong = status("--url", kernel.url, "--token", "not-a-known-token")
    assert (wrong.returncode, wrong.stdout) == (1, "")
    assert wrong.stderr == f"kernel: {kernel.url} answered 401: the token was refused: Invalid credentials\n"
    missing = status("--url", kernel.url)
    assert missing.returncode == 1 and "no token given (--token or $KERNEL_TOKEN)" in missing.stderr
    viewer = status("--url", kernel.url, "--token", VIEWER_TOKEN)
    assert viewer.returncode == 1
    assert "answered 403: 'external:viewer' is not an operator" in viewer.stderr
    assert "Traceback" not in wrong.stderr + missing.stderr + viewer.stderr


def test_an_unreachable_kernel_is_one_line_and_exit_1() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    proc = status("--url", url, "--token", OPERATOR_TOKEN)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr.startswith(f"kernel: cannot reach the kernel at {url} (") and "is it running?" in proc.stderr
    assert len(proc.stderr.splitlines()) == 1

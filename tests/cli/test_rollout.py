"""``kernel rollout`` without a kernel to talk to: what it says when nothing can be done (the rollouts
themselves, under load, are in ``tests/supervisor/test_rollout.py``)."""

from __future__ import annotations

import os
import subprocess
import sys

from kernel.testing import free_port


def rollout(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "KERNEL_TOKEN"}
    return subprocess.run(
        [sys.executable, "-m", "kernel.cli", "rollout", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_it_needs_one_target() -> None:
    for args in ((), ("live", "--all"), ("live", "--gateways")):
        proc = rollout(*args, "--url", "http://127.0.0.1:1")
        assert proc.returncode == 1
        assert proc.stderr == "kernel: name the plugins to roll out, or --all, or --gateways (one of them)\n"


def test_a_kernel_that_cannot_be_reached_is_one_line_and_exit_1() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    proc = rollout("live", "--url", url, "--token", "t")
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith(f"kernel: cannot reach the kernel at {url} (") and proc.stderr.count("\n") == 1
    assert "is it running? (--url, or --config)" in proc.stderr

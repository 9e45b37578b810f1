"""A plugin flooding its log, and a kernel whose output nobody reads: neither stalls another plugin.

Each worker writes to a pipe of its own that the supervisor reads and relays
(``kernel.supervisor.logrelay``): past its plugin's log rate lines are dropped, counted in the
metrics and summarized; when the kernel's output is not read, lines are dropped, never waited for.
"""

from __future__ import annotations

import fcntl
import re
import statistics
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from kernel.testing import KernelProcess, make_package, wait_for
from tests import plugins
from tests.conftest import base_config

RATE, BURST = 50, 100


@pytest.fixture(scope="module")
def chatty_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("chatty-site")
    make_package(site, "kernel-test-chatty", {"test_chatty": plugins.CHATTY}, {"chatty": "test_chatty:plugin"})
    make_package(site, "kernel-test-echo", {"test_echo": plugins.ECHO}, {"echo": "test_echo:plugin"})
    return site


def _dropped(metrics_url: str, plugin: str, reason: str) -> int:
    text = httpx.get(metrics_url, timeout=10).text
    found = re.search(rf'kernel_log_lines_dropped_total\{{plugin_id="{plugin}",reason="{reason}"\}} (\S+)', text)
    return int(float(found.group(1))) if found else 0


def _latencies(c: httpx.Client, n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        assert c.get("/api/echo/pid").status_code == 200
        out.append(time.perf_counter() - start)
    return out


def test_a_plugin_flooding_its_log_is_held_to_its_rate_and_another_keeps_its_latency(chatty_site: Path) -> None:
    config: dict[str, Any] = base_config()
    config["backend"]["logging"] = {"plugins": {"chatty": {"rate": {"linesPerSecond": RATE, "burst": BURST}}}}
    with KernelProcess(config, paths=[chatty_site]) as k, httpx.Client(base_url=k.url, timeout=30) as c:
        chatty = c.get("/api/chatty/flood").json()["pid"]
        _latencies(c, 20)  # warm: connections, first requests
        quiet = _latencies(c, 200)

        assert c.post("/api/chatty/flood", params={"s": 60, "n": 200_000}).status_code == 200
        wait_for(lambda: c.get("/api/chatty/flood").json()["lines"] > 10_000, 20, "no flood")
        flooded = []
        while c.get("/api/chatty/flood").json()["running"]:  # another plugin, all through the flood
            flooded += _latencies(c, 20)
        logged = c.get("/api/chatty/flood").json()["lines"]

        relayed = len(re.findall(rf"\[chatty {chatty}\] flood \d+ ", k.output()))
        assert logged == 200_000 and relayed < logged // 10  # the flood happened, and was held back
        wait_for(lambda: _dropped(k.metrics_url, "chatty", "rate") == logged - relayed, 10, "no count of drops")
        summary = re.compile(
            r"plugin 'chatty': (\d+) log lines dropped in the last \d+ s \(rate limit 50/s, burst 100\)"
        )
        wait_for(lambda: summary.search(k.output()), 30, "no summary line")
        assert _dropped(k.metrics_url, "echo", "rate") == 0
        # the other plugin's requests keep their latency (a generous bound: both measured here, side by side)
        assert len(flooded) >= 20
        assert statistics.median(flooded) < 5 * statistics.median(quiet), (quiet, flooded)
        print(
            f"flood: {logged} lines, {relayed} relayed; echo p50 quiet {statistics.median(quiet) * 1e3:.2f} ms, "
            f"flooded {statistics.median(flooded) * 1e3:.2f} ms"
        )


def _pipe_bytes(fd: int) -> int:
    """Bytes waiting in the pipe ``fd`` reads."""
    return int(struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0])


def test_a_kernel_whose_output_nobody_reads_still_serves_every_plugin(chatty_site: Path) -> None:
    config: dict[str, Any] = base_config()
    config["backend"]["logging"] = {"rate": {"linesPerSecond": 0}}  # every line heads for the unread output
    k = KernelProcess(config, paths=[chatty_site])  # its config and ports; started here, its output a pipe
    env = {**__import__("os").environ, "PYTHONPATH": str(chatty_site)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kernel.cli", "serve", "--config", str(k.config_path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    try:
        k.proc = proc  # type: ignore[assignment]  # for wait_ready's exit check
        k.wait_ready(30)
        with httpx.Client(base_url=k.url, timeout=30) as c:
            assert c.post("/api/chatty/flood", params={"s": 60, "n": 100_000}).status_code == 200
            # the output is full: the attack reached the kernel, its reader reads nothing
            wait_for(
                lambda: _pipe_bytes(proc.stdout.fileno()) >= 32_768,
                20,
                lambda: f"the output never filled: {_pipe_bytes(proc.stdout.fileno())}",
            )  # type: ignore[union-attr]
            wait_for(lambda: _dropped(k.metrics_url, "chatty", "backlog") > 0, 20, "no drop counted")
            answered = []
            while c.get("/api/chatty/flood").json()["running"]:  # the flooding worker is never blocked either
                answered.append(c.get("/api/echo/pid").status_code)
            assert c.get("/api/chatty/flood").json()["lines"] == 100_000
            assert len(answered) > 5 and set(answered) == {200}
            assert c.get("/.kernel/health/v1/readiness").status_code == 200
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()

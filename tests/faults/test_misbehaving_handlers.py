"""Handlers that misbehave without crashing: one that ignores SIGTERM, one that floods its log.

A worker whose handler ignores SIGTERM (``SIG_IGN``) and either swallows every cancellation or
blocks its event loop cannot stop by itself: the supervisor kills it once its stop timeouts are
over, when the kernel stops and when the worker is replaced, and no process is left behind.
A handler logging in a tight loop (with no log rate) writes to its pipe, which the supervisor reads
and relays through a bounded buffer (``kernel.supervisor.logrelay``): the gateway and the other
plugins keep answering, and no process's memory grows.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from kernel.testing import KernelProcess, make_package, wait_for
from tests import plugins
from tests.conftest import assert_error_shape, base_config
from tests.faults.conftest import children, lines_with

GRACE, KILL_TIMEOUT = 1, 1  # backend.workers.shutdownGrace and killTimeout


@pytest.fixture(scope="module")
def misbehaving_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """stubborn and frozen, chatty, and echo (the other plugin that must not notice)."""
    site = tmp_path_factory.mktemp("misbehaving-site")
    entry_points = {"stubborn": "test_stubborn:plugin", "frozen": "test_stubborn:frozen"}
    make_package(site, "kernel-test-stubborn", {"test_stubborn": plugins.STUBBORN}, entry_points)
    make_package(site, "kernel-test-chatty", {"test_chatty": plugins.CHATTY}, {"chatty": "test_chatty:plugin"})
    make_package(site, "kernel-test-echo", {"test_echo": plugins.ECHO}, {"echo": "test_echo:plugin"})
    return site


def _config(**workers: Any) -> dict[str, Any]:
    config = base_config(requestTimeout=60)
    config["backend"]["logging"] = {"rate": {"linesPerSecond": 0}}  # type: ignore[index]  # every line relayed
    config["backend"]["workers"].update(  # type: ignore[index]
        # heartbeats alone would not kill a worker here: what stops it is the stop timeouts under test
        {"shutdownGrace": GRACE, "killTimeout": KILL_TIMEOUT, "heartbeatTimeout": 60, **workers}
    )
    return config


@contextlib.contextmanager
def _kernel(config: dict[str, Any], site: Path) -> Iterator[KernelProcess]:
    k = KernelProcess(config, paths=[site]).start(timeout=60)  # 9 plugins on a busy machine
    try:
        yield k
    finally:
        k.stop()


def _hold(kernel: KernelProcess, plugin: str, mark: Path) -> tuple[threading.Thread, list[httpx.Response]]:
    """A request to ``plugin``'s ``/hold`` in a thread, started once the handler ignores SIGTERM; its answer."""
    answer: list[httpx.Response] = []

    def call() -> None:
        try:
            with httpx.Client(timeout=120) as c:
                answer.append(c.get(f"{kernel.url}/api/{plugin}/hold", params={"mark": str(mark)}))
        except httpx.HTTPError:
            pass  # the kernel went away under it

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    wait_for(mark.exists, 20, f"the {plugin} handler did not start")
    return thread, answer


def test_a_kernel_stopping_kills_workers_that_ignore_sigterm_and_leaves_no_process(
    misbehaving_site: Path, tmp_path: Path
) -> None:
    k = KernelProcess(_config(), paths=[misbehaving_site]).start(timeout=60)
    try:
        assert k.proc is not None
        held = [_hold(k, plugin, tmp_path / plugin) for plugin in ("stubborn", "frozen")]
        stuck = [p.pid for plugin in ("stubborn", "frozen") for p in children(k, "worker", plugin)]
        descendants = psutil.Process(k.proc.pid).children(recursive=True)
        assert len(stuck) == 2
        k.proc.send_signal(signal.SIGTERM)
        code = k.proc.wait(60)  # gateways drain (grace), workers are asked, terminated, then killed
    finally:
        k.stop()
    assert code == 0, k.output()
    for plugin in ("stubborn", "frozen"):
        assert len([line for line in lines_with(k, "ignored SIGTERM; killing it") if f"{plugin}." in line]) == 1
    _, alive = psutil.wait_procs(descendants, timeout=5)
    assert not alive, f"left behind: {alive}"
    for thread, _ in held:
        thread.join(10)


def test_a_replaced_worker_that_ignores_sigterm_is_killed_after_its_drain(
    misbehaving_site: Path, tmp_path: Path
) -> None:
    config = _config(plugins={"stubborn": {"limits": {"maxRequests": 3}}})  # the 3rd request recycles it
    with _kernel(config, misbehaving_site) as k, httpx.Client(base_url=k.url, timeout=30) as c:
        old = c.get("/api/stubborn/pid").json()["pid"]  # 1
        held, answer = _hold(k, "stubborn", tmp_path / "mark")  # 2
        assert c.get("/api/stubborn/pid").json()["pid"] == old  # 3: a replacement starts, the old one drains

        new = wait_for(lambda: (pid := c.get("/api/stubborn/pid").json()["pid"]) != old and pid, 30, k.output)
        _, alive = psutil.wait_procs([psutil.Process(old)], timeout=30)  # grace + killTimeout, then killed
        assert not alive, k.output()
        assert len(lines_with(k, "did not stop after draining; killing it")) == 1, k.output()
        held.join(30)  # the request it held fails in the error shape once it is killed, never hangs
        assert_error_shape(answer[0], 503, "ServiceUnavailableError")
        assert c.get("/api/stubborn/pid").json()["pid"] == new  # the kernel serves on
        assert c.get("/api/echo/pid").status_code == 200
        assert k.proc is not None and k.proc.poll() is None


def _rss_mb(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss) / 2**20


def test_a_handler_flooding_its_log_disturbs_no_other_plugin_and_no_memory_grows(
    misbehaving_site: Path,
) -> None:
    with _kernel(_config(), misbehaving_site) as k, httpx.Client(base_url=k.url, timeout=30) as c:
        assert k.proc is not None
        gateway = children(k, "gateway")[0].pid
        chatty = c.get("/api/chatty/flood").json()["pid"]
        echo = [c.get("/api/echo/pid").status_code for _ in range(20)]  # warm: connections, first requests
        first = {
            name: _rss_mb(pid) for name, pid in [("supervisor", k.proc.pid), ("gateway", gateway), ("chatty", chatty)]
        }

        assert c.post("/api/chatty/flood", params={"s": 6, "n": 400_000}).status_code == 200
        wait_for(lambda: c.get("/api/chatty/flood").json()["lines"] > 1000, 10, "no flood")
        while c.get("/api/chatty/flood").json()["running"]:  # another plugin, all through the flood
            echo.append(c.get("/api/echo/pid").status_code)
        status = c.get("/api/chatty/flood").json()
        last = {
            name: _rss_mb(pid) for name, pid in [("supervisor", k.proc.pid), ("gateway", gateway), ("chatty", chatty)]
        }

        assert len(echo) > 20 and set(echo) == {200}
        growth = {name: last[name] - first[name] for name in first}
        assert all(mb < 20 for mb in growth.values()), (first, last)  # not the flood held in memory
        # every line went straight to the kernel's output, in order, attributed to the plugin
        flood = lines_with(k, "flood ")
        assert len([line for line in flood if f"[chatty {chatty}]" in line]) == status["lines"]
        assert c.get("/.kernel/health/v1/readiness").status_code == 200
        print(f"flood: {status['lines']} lines; echo answered {len(echo)} requests; RSS MB first {first} last {last}")

"""Worker supervision with real processes: crashes, flapping, orphans, graceful shutdown."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import psutil

from kernel.testing import KernelProcess, make_package
from tests import plugins
from tests.conftest import assert_error_shape, base_config


def _descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def test_kill_9_of_a_worker_mid_request(kernel: KernelProcess, client: httpx.Client) -> None:
    pid = client.get("/api/echo/pid").json()["pid"]
    result: dict[str, httpx.Response] = {}

    def slow() -> None:
        result["resp"] = client.get("/api/echo/sleep", params={"s": 2})

    t = threading.Thread(target=slow)
    started = time.monotonic()
    t.start()
    time.sleep(0.3)
    os.kill(pid, signal.SIGKILL)
    # another plugin keeps answering while echo is down
    assert client.get("/api/other/ping").status_code == 200
    t.join()
    elapsed = time.monotonic() - started
    assert elapsed < 3, "the in-flight request should fail fast, well within its deadline"
    resp = result["resp"]
    assert resp.status_code >= 500
    assert_error_shape(resp, resp.status_code, "ServiceUnavailableError")
    deadline = time.monotonic() + 10
    while True:
        r = client.get("/api/echo/pid")
        if r.status_code == 200:
            break
        assert r.status_code == 503
        assert time.monotonic() < deadline, "worker was not restarted"
        time.sleep(0.05)
    assert r.json()["pid"] != pid
    assert client.get("/api/other/ping").status_code == 200


def test_flapping_plugin_is_marked_failed(site: Path, tmp_path: Path) -> None:
    make_package(tmp_path, "kernel-test-crashy", {"test_crashy": plugins.CRASHY}, {"crashy": "test_crashy:plugin"})
    config = base_config()
    config["backend"]["workers"].update({"flappingLimit": 2, "flappingWindow": 30, "restartInitialDelay": 0.05})
    config["backend"]["startup"] = {"plugins": {"crashy": {"onPluginBootFailure": "continue"}}}
    k = KernelProcess(config, paths=[site, tmp_path]).start(wait=False)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                code, body = k.readiness()
            except OSError:
                code, body = 0, {}
            if "failed" in str(body.get("plugins", {}).get("crashy", "")):
                break
            assert time.monotonic() < deadline, f"crashy never marked failed: {body}\n{k.output()}"
            time.sleep(0.1)
        assert code == 503
        assert set(body["plugins"]) == {"crashy"}
        with httpx.Client(base_url=k.url) as c:
            assert c.get("/api/echo/pid").status_code == 200
            assert_error_shape(c.get("/api/crashy/x"), 503, "ServiceUnavailableError")
        time.sleep(0.5)  # no more restarts once failed
        assert k.output().count("worker crashy.") == 3, k.output()
    finally:
        k.stop()


def test_kill_9_of_the_kernel_leaves_no_worker(site: Path) -> None:
    k = KernelProcess(base_config(), paths=[site]).start()
    assert k.proc is not None
    children = _descendants(k.proc.pid)
    assert len(children) >= 3  # a gateway and a worker per plugin
    k.proc.kill()
    k.proc.wait()
    _gone, alive = psutil.wait_procs(children, timeout=5)
    assert not alive, f"orphans left: {[p.pid for p in alive]}"
    k.stop()


def test_sigterm_lets_in_flight_requests_finish(site: Path) -> None:
    k = KernelProcess(base_config(), paths=[site]).start()
    assert k.proc is not None
    results: list[httpx.Response] = []

    def slow() -> None:
        with httpx.Client(base_url=k.url, timeout=10) as c:
            results.append(c.get("/api/echo/sleep", params={"s": 1.5}))

    threads = [threading.Thread(target=slow) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.4)
    children = _descendants(k.proc.pid)
    k.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    code, body = k.readiness()  # draining: not ready, and new requests are refused
    assert code == 503 and body["status"] == "stopping"
    with httpx.Client(base_url=k.url, timeout=5) as c:
        assert_error_shape(c.get("/api/echo/pid"), 503, "ServiceUnavailableError")
    for t in threads:
        t.join()
    assert [r.status_code for r in results] == [200, 200, 200]
    assert k.proc.wait(15) == 0
    _, alive = psutil.wait_procs(children, timeout=5)
    assert not alive
    k.stop()


def test_replicas_share_the_load(site: Path) -> None:
    config = base_config()
    config["backend"]["workers"]["plugins"] = {"echo": {"replicas": 2}}
    with KernelProcess(config, paths=[site]) as k, httpx.Client(base_url=k.url, timeout=10) as c:
        # two concurrent slow requests go to the two least-loaded workers
        pids: list[int] = []
        threads = [
            threading.Thread(target=lambda: pids.append(c.get("/api/echo/sleep", params={"s": 0.5}).json()["pid"]))
            for _ in range(2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(set(pids)) == 2


def test_a_hung_worker_is_killed_and_replaced(kernel: KernelProcess, client: httpx.Client) -> None:
    pid = client.get("/api/echo/pid").json()["pid"]
    resp = client.get("/api/echo/block", params={"s": 60})
    assert resp.status_code in (503, 504)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        r = client.get("/api/echo/pid")
        if r.status_code == 200 and r.json()["pid"] != pid:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the hung worker was not replaced")
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert "stopped answering" in kernel.output()


def test_two_gateways_share_the_workers_and_survive_each_other(site: Path) -> None:
    config = base_config(processes=2)
    with KernelProcess(config, paths=[site]) as k, httpx.Client(base_url=k.url, timeout=10) as c:
        assert k.proc is not None
        gateways = [p for p in psutil.Process(k.proc.pid).children() if "kernel.gateway" in " ".join(p.cmdline())]
        assert len(gateways) == 2
        pids = {c.get("/api/echo/pid", headers={"Connection": "close"}).json()["pid"] for _ in range(20)}
        assert len(pids) == 1  # one echo worker behind both gateways
        gateways[0].kill()
        ok = 0
        for _ in range(20):
            try:
                ok += c.get("/api/other/ping", headers={"Connection": "close"}).status_code == 200
            except httpx.TransportError:
                pass
        assert ok >= 15
        deadline = time.monotonic() + 10
        while True:
            now = [p for p in psutil.Process(k.proc.pid).children() if "kernel.gateway" in " ".join(p.cmdline())]
            if len(now) == 2:
                break
            assert time.monotonic() < deadline, "the dead gateway was not restarted"
            time.sleep(0.1)


def test_development_mode_shows_stack_traces(site: Path) -> None:
    with KernelProcess(base_config(), paths=[site], env={"KERNEL_ENV": "development"}) as k:
        body = httpx.get(k.url + "/api/echo/boom").json()
        assert "RuntimeError: kaboom" in body["error"]["stack"]


def test_a_slow_init_is_not_mistaken_for_a_hang(tmp_path: Path) -> None:
    make_package(tmp_path, "kernel-test-slow", {"test_slow": plugins.SLOW_BOOT}, {"slow": "test_slow:plugin"})
    config = base_config()
    config["backend"]["workers"].update({"heartbeatTimeout": 1, "startTimeout": 10})
    with KernelProcess(config, paths=[tmp_path]) as k:
        time.sleep(1.5)  # more than a heartbeat timeout after the worker became ready
        assert httpx.get(k.url + "/api/slow/ok").json() == {"ok": True}
        assert "killing" not in k.output()

"""Worker supervision with real processes: crashes, flapping, orphans, graceful shutdown."""

from __future__ import annotations

import os
import re
import signal
import threading
from pathlib import Path
from typing import Any

import httpx
import psutil

from kernel.testing import KernelProcess, make_package, stays, wait_for
from tests import plugins
from tests.conftest import assert_error_shape, base_config


def _descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def _echo_stats(url: str) -> dict[str, Any]:
    """The echo worker's ``/pid``: its pid and counters (``sleeping``: requests inside ``/sleep`` now)."""
    stats: dict[str, Any] = httpx.get(url + "/api/echo/pid", timeout=10).json()
    return stats


def _gateways(k: KernelProcess) -> list[psutil.Process]:
    assert k.proc is not None
    return [p for p in psutil.Process(k.proc.pid).children() if "kernel.gateway" in " ".join(p.cmdline())]


def test_kill_9_of_a_worker_mid_request(kernel: KernelProcess, client: httpx.Client) -> None:
    pid = client.get("/api/echo/pid").json()["pid"]
    result: dict[str, httpx.Response] = {}

    def slow() -> None:
        result["resp"] = client.get("/api/echo/sleep", params={"s": 2})

    log_before = len(kernel.output())
    t = threading.Thread(target=slow)
    t.start()
    wait_for(lambda: _echo_stats(kernel.url)["sleeping"] >= 1, 10, "the slow request never reached the worker")
    os.kill(pid, signal.SIGKILL)
    # another plugin keeps answering while echo is down
    assert client.get("/api/other/ping").status_code == 200
    t.join()
    # the in-flight request fails fast, well within its deadline: the gateway answers because the worker died
    # (503), not because the 3 s deadline passed (504 GatewayTimeoutError) or a heartbeat timed out
    assert_error_shape(result["resp"], 503, "ServiceUnavailableError")
    assert "stopped answering" not in kernel.output()[log_before:]

    def restarted() -> httpx.Response | None:
        r = client.get("/api/echo/pid")
        assert r.status_code in (200, 503), r.text
        return r if r.status_code == 200 else None

    r = wait_for(restarted, 10, "worker was not restarted")
    assert r.json()["pid"] != pid
    assert client.get("/api/other/ping").status_code == 200


def test_flapping_plugin_is_marked_failed(site: Path, tmp_path: Path) -> None:
    make_package(tmp_path, "kernel-test-crashy", {"test_crashy": plugins.CRASHY}, {"crashy": "test_crashy:plugin"})
    config = base_config()
    config["backend"]["workers"].update({"flappingLimit": 2, "flappingWindow": 30, "restartInitialDelay": 0.05})
    config["backend"]["startup"] = {"plugins": {"crashy": {"onPluginBootFailure": "continue"}}}
    k = KernelProcess(config, paths=[site, tmp_path]).start(wait=False)
    try:

        def crashy_failed() -> tuple[int, dict[str, Any]] | None:
            code, body = k.readiness()
            # crashy may fail (onPluginBootFailure: continue): once the others are ready, the instance is in traffic
            failed = "failed" in str(body.get("failed", {}).get("crashy", ""))
            return (code, body) if failed and code == 200 else None

        code, body = wait_for(
            crashy_failed, 20, lambda: f"crashy never marked failed\n{k.output()}", interval=0.1, ignore=(OSError,)
        )
        assert code == 200  # crashy may fail (onPluginBootFailure: continue): the instance stays in traffic
        assert set(body["failed"]) == {"crashy"} and "plugins" not in body
        with httpx.Client(base_url=k.url) as c:
            assert c.get("/api/echo/pid").status_code == 200
            assert_error_shape(c.get("/api/crashy/x"), 503, "ServiceUnavailableError")
        # no more restarts once failed: nothing to wait for, so watch a window longer than the restart backoff
        stays(
            lambda: k.output().count("worker crashy.") == 3,
            0.5,
            lambda: f"crashy restarted after failing\n{k.output()}",
        )
        assert k.output().count("worker crashy.") == 3, k.output()
    finally:
        k.stop()


def _workers(k: KernelProcess, plugin_id: str) -> list[psutil.Process]:
    """The worker processes of ``plugin_id`` (the supervisor's children ``python -m kernel.worker <id>.<slot>...``)."""
    assert k.proc is not None
    found = []
    for child in psutil.Process(k.proc.pid).children():
        try:
            cmd = child.cmdline()
        except psutil.Error:
            continue
        if len(cmd) >= 4 and cmd[2] == "kernel.worker" and cmd[3].startswith(f"{plugin_id}."):
            found.append(child)
    return found


def test_each_cool_down_of_a_flapping_plugin_doubles_up_to_16x_until_it_is_ready_again(
    site: Path, tmp_path: Path
) -> None:
    make_package(tmp_path, "kernel-test-flaky", {"test_flaky": plugins.FLAKY}, {"flaky": "test_flaky:plugin"})
    config = base_config()
    # flappingLimit 0: every death is one too many, so each start that dies begins a cool-down
    config["backend"]["workers"].update(
        {"flappingLimit": 0, "flappingWindow": 60, "restartInitialDelay": 0.05, "flappingCooldown": 0.05}
    )
    config["backend"]["startup"] = {"plugins": {"flaky": {"onPluginBootFailure": "continue"}}}
    config["flaky"] = {"counterFile": str(tmp_path / "starts"), "failures": 6}

    def cool_downs() -> list[str]:
        return re.findall(r"plugin 'flaky' failed: .* trying again in ([0-9.]+)s", k.output())

    def serving() -> dict[str, Any] | None:
        r = httpx.get(k.url + "/api/flaky/ok", timeout=10)
        return r.json() if r.status_code == 200 else None

    k = KernelProcess(config, paths=[site, tmp_path]).start(wait=False)
    try:
        assert wait_for(serving, 60, k.output, ignore=(httpx.HTTPError,)) == {"start": 7}
        # six deaths, six cool-downs: each twice the one before, up to 16 times flappingCooldown
        assert cool_downs() == ["0.05", "0.1", "0.2", "0.4", "0.8", "0.8"], k.output()
        [worker] = _workers(k, "flaky")
        worker.kill()  # a death after it was ready again: the next cool-down is the first one again
        wait_for(lambda: len(cool_downs()) == 7, 20, k.output)
        assert cool_downs()[-1] == "0.05", k.output()
        assert wait_for(serving, 20, k.output, ignore=(httpx.HTTPError,)) == {"start": 8}
    finally:
        k.stop()


def test_a_flapping_plugin_that_may_not_fail_makes_the_instance_unready(site: Path) -> None:
    config = base_config()
    config["backend"]["workers"].update({"flappingLimit": 1, "flappingWindow": 60, "restartInitialDelay": 0.05})
    k = KernelProcess(config, paths=[site]).start()  # onPluginBootFailure: abort, the default
    try:
        first = _echo_stats(k.url)["pid"]
        os.kill(first, signal.SIGKILL)

        def restarted() -> int | None:
            pid = int(httpx.get(k.url + "/api/echo/pid", timeout=10).json()["pid"])
            return pid if pid != first else None

        os.kill(wait_for(restarted, 20, "echo was not restarted", ignore=(httpx.HTTPError, KeyError)), signal.SIGKILL)
        body = k.wait_ready(status=503)
        assert body["status"] == "unavailable" and set(body["plugins"]) == {"echo"}, body
        assert body["plugins"]["echo"].startswith("failed: 2 worker deaths") and "failed" not in body
        assert k.proc is not None and k.proc.poll() is None  # ever ready: failed, not a startup abort
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
    wait_for(lambda: _echo_stats(k.url)["sleeping"] == 3, 10, "the three slow requests never reached the worker")
    children = _descendants(k.proc.pid)
    k.proc.send_signal(signal.SIGTERM)
    # draining: not ready, and new requests are refused
    code, body = wait_for(
        lambda: (got := k.readiness())[0] != 200 and got, 10, "the kernel did not drain", ignore=(OSError, ValueError)
    )
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


def test_a_hung_worker_is_killed_and_replaced(site: Path) -> None:
    config = base_config(requestTimeout=1)
    # the request's deadline (1 s) passes well before the silent worker misses its heartbeats (4 s): a 504
    config["backend"]["workers"]["heartbeatTimeout"] = 4
    with KernelProcess(config, paths=[site]) as k, httpx.Client(base_url=k.url, timeout=20) as client:
        pid = client.get("/api/echo/pid").json()["pid"]
        assert_error_shape(client.get("/api/echo/block", params={"s": 60}), 504, "GatewayTimeoutError")
        assert "stopped answering" not in k.output()  # the deadline answered, not the worker's death

        def replaced() -> bool:
            r = client.get("/api/echo/pid")
            return r.status_code == 200 and r.json()["pid"] != pid

        wait_for(replaced, 15, "the hung worker was not replaced", interval=0.1)
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        assert "stopped answering" in k.output()


def test_two_gateways_share_the_workers_and_survive_each_other(site: Path) -> None:
    config = base_config(processes=2)
    with KernelProcess(config, paths=[site]) as k, httpx.Client(base_url=k.url, timeout=10) as c:
        gateways = _gateways(k)
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
        wait_for(
            lambda: len(_gateways(k)) == 2,
            10,
            "the dead gateway was not restarted",
            interval=0.1,
            ignore=(psutil.Error,),
        )


def test_development_mode_shows_stack_traces(site: Path) -> None:
    with KernelProcess(base_config(), paths=[site], env={"KERNEL_ENV": "development"}) as k:
        body = httpx.get(k.url + "/api/echo/boom").json()
        assert "RuntimeError: kaboom" in body["error"]["stack"]


def test_a_slow_init_is_not_mistaken_for_a_hang(tmp_path: Path) -> None:
    make_package(tmp_path, "kernel-test-slow", {"test_slow": plugins.SLOW_BOOT}, {"slow": "test_slow:plugin"})
    config = base_config()
    config["backend"]["workers"].update({"heartbeatTimeout": 1, "startTimeout": 10})
    with KernelProcess(config, paths=[tmp_path]) as k:
        # the window is the behaviour: more than a heartbeat timeout after the worker became ready, it is not killed
        stays(lambda: "killing" not in k.output(), 1.5, lambda: f"the slow worker was killed\n{k.output()}")
        assert httpx.get(k.url + "/api/slow/ok").json() == {"ok": True}
        assert "killing" not in k.output()

"""The dashboard's snapshot through a real ``kernel serve``: who may read it, and that it tells the truth.

Every pid is checked against ``/proc`` (the worker's command line names its worker id), every
plugin and worker against the kernel's instance endpoint, and a worker killed with ``kill -9``
comes back in the snapshot with a new pid and one more restart.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import httpx
import psutil
import pytest

from kernel import __version__
from kernel.dashboard.snapshot import build_snapshot
from kernel.protocol import PluginState, ProcessSample, Stats
from kernel.testing import KernelProcess, wait_for
from tests.conftest import RESTRICTED_TOKEN, TOKEN, assert_error_shape
from tests.dashboard.support import (
    BROKEN,
    BROKEN_REASON,
    SNAPSHOT,
    VIEWER_TOKEN,
    echo_pid,
    plugin_of,
    proc_cmdline,
    proc_rss,
    snapshot,
    start_kernel,
)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelProcess]:
    k = start_kernel(tmp_path_factory.mktemp("dashboard-site"))
    yield k
    k.stop()


def sampled(kernel: KernelProcess) -> dict[str, Any]:
    """A snapshot in which the supervisor has sampled every worker the table names."""

    def ready() -> dict[str, Any] | None:
        body = snapshot(kernel)
        workers = [w for p in body["plugins"] for w in p["workers"]]  # a failed plugin has none
        return body if body["sampledAt"] is not None and workers and all(w["pid"] for w in workers) else None

    return wait_for(ready, 15, "the snapshot never had a pid for every worker")


def test_without_credentials_it_is_401_in_the_error_shape(kernel: KernelProcess) -> None:
    assert_error_shape(httpx.get(kernel.url + SNAPSHOT, timeout=10), 401, "AuthenticationError")
    bad = httpx.get(kernel.url + SNAPSHOT, headers={"Authorization": "Bearer not-a-known-token"}, timeout=10)
    assert_error_shape(bad, 401, "AuthenticationError")


def test_a_principal_that_is_no_operator_is_refused_with_403(kernel: KernelProcess) -> None:
    resp = httpx.get(kernel.url + SNAPSHOT, headers={"Authorization": f"Bearer {VIEWER_TOKEN}"}, timeout=10)
    body = assert_error_shape(resp, 403, "NotAllowedError")
    message = body["error"]["message"]  # type: ignore[index]
    assert "'external:viewer' is not an operator" in message and "backend.dashboard.operators" in message
    # a token limited to some plugins never reaches the kernel's own endpoints
    limited = httpx.get(kernel.url + SNAPSHOT, headers={"Authorization": f"Bearer {RESTRICTED_TOKEN}"}, timeout=10)
    assert_error_shape(limited, 403, "NotAllowedError")


def test_the_operator_sees_every_plugin_and_worker_with_its_real_pid(kernel: KernelProcess) -> None:
    body = sampled(kernel)
    resp = httpx.get(kernel.url + SNAPSHOT, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert resp.status_code == 200 and resp.headers["cache-control"] == "no-store"
    assert body["kernel"]["version"] == __version__ and body["kernel"]["mount"] == "/api"
    assert body["kernel"]["uptimeSeconds"] > 0

    # every plugin and worker of the worker table (the instance endpoint) is in the snapshot
    instance = httpx.get(
        kernel.url + "/.kernel/instance/v1/plugins", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    ).json()
    table = {p["id"]: set(p["workers"]) for p in instance["plugins"]}
    listed = {p["id"]: {w["id"] for w in p["workers"]} for p in body["plugins"]}
    assert {"echo", "metered"} <= set(listed)
    for plugin_id, workers in table.items():
        assert workers <= listed[plugin_id], plugin_id
    # the plugin that failed, and why
    (failed,) = body["failed"]
    assert failed["id"] == BROKEN and BROKEN_REASON in failed["reason"]
    broken = plugin_of(body, BROKEN)
    assert broken["state"] == "failed" and BROKEN_REASON in broken["reason"] and broken["workers"] == []

    assert kernel.proc is not None
    children = {c.pid for c in psutil.Process(kernel.proc.pid).children()}
    for plugin in body["plugins"]:
        if plugin["id"] == BROKEN:
            continue
        assert plugin["state"] == "ready" and plugin["restarts"] == 0 and plugin["reason"] is None
        for worker in plugin["workers"]:
            pid = worker["pid"]
            # the pid is that worker's process: a child of the kernel whose command line names the worker
            assert pid in children and worker["id"] in proc_cmdline(pid).split(), (worker, proc_cmdline(pid))
            assert worker["state"] == "ready"
            assert worker["rssBytes"] > 0 and proc_rss(pid) / 3 < worker["rssBytes"] < proc_rss(pid) * 3
            assert worker["cpuSeconds"] > 0 and worker["startedAt"] <= body["now"]
    assert plugin_of(body, "echo")["workers"][0]["pid"] == echo_pid(kernel)  # as the worker says itself

    assert body["supervisor"]["pid"] == kernel.proc.pid and body["supervisor"]["rssBytes"] > 0
    assert [g["id"] for g in body["gateways"]] == ["gateway-0"]
    gateway = body["gateways"][0]
    assert gateway["pid"] in children and gateway["rssBytes"] > 0 and gateway["state"] == "ready"
    assert body["kernel"]["answeredBy"] == gateway["pid"]  # one gateway: it answered


def test_a_server_error_shows_among_the_recent_errors(kernel: KernelProcess) -> None:
    boom = httpx.get(kernel.url + "/api/echo/boom", timeout=10)
    assert boom.status_code == 500
    errors = snapshot(kernel)["recentErrors"]
    mine = [e for e in errors if e["requestId"] == boom.headers["x-request-id"]]
    assert mine == [
        {
            "at": mine[0]["at"],
            "method": "GET",
            "path": "/api/echo/boom",
            "status": 500,
            "pluginId": "echo",
            "requestId": boom.headers["x-request-id"],
        }
    ]
    assert errors[0] == mine[0]  # newest first


def test_after_kill_9_the_snapshot_shows_the_new_pid_and_one_more_restart(kernel: KernelProcess) -> None:
    before = plugin_of(sampled(kernel), "echo")
    old_pid = before["workers"][0]["pid"]
    os.kill(old_pid, signal.SIGKILL)

    def replaced() -> dict[str, Any] | None:
        echo = plugin_of(snapshot(kernel), "echo")
        pids = [w["pid"] for w in echo["workers"]]
        done = echo["restarts"] == before["restarts"] + 1 and pids and None not in pids and old_pid not in pids
        return echo if done and all(w["state"] == "ready" for w in echo["workers"]) else None

    echo = wait_for(replaced, 20, "the snapshot never showed echo's new worker")
    new_pid = echo["workers"][0]["pid"]
    assert len(echo["workers"]) == 1 and echo["workers"][0]["id"] != before["workers"][0]["id"]
    assert echo["workers"][0]["id"] in proc_cmdline(new_pid).split()
    assert wait_for(lambda: echo_pid(kernel), 10, "echo does not answer", ignore=(httpx.HTTPError,)) == new_pid
    assert plugin_of(snapshot(kernel), "metered")["restarts"] == 0  # only echo's worker died


# ---------------------------------------------------------------------------- the snapshot's assembly


def test_a_worker_not_sampled_yet_has_no_pid_and_one_leaving_the_table_is_still_shown() -> None:
    states = [
        PluginState("echo", "ready", [], ["echo.0.2", "echo.1.3"], worker_states={"echo.0.2": "ready"}),
        PluginState("crashy", "failed", [], [], reason="worker exited 3 times within 30s"),
    ]
    old = ProcessSample("worker", "echo.0.1", 11, "echo", "draining", 5.0, 4096, 0.5, served=7)
    fresh = ProcessSample("worker", "echo.0.2", 12, "echo", "starting", 9.0, 8192, 0.25, in_flight=2, rps=1.5)
    supervisor = ProcessSample("supervisor", "supervisor", 1, "", "ready", 1.0, 1024, 0.1)
    stats = Stats(10.0, [supervisor, old, fresh], {"echo": 2, "crashy": 3}, {"echo": 1})
    body = build_snapshot(states, stats, [], version="9.9", mount="/api", now=11.0, gateway_pid=5)
    crashy, echo = body["plugins"]
    assert [w["id"] for w in echo["workers"]] == ["echo.0.2", "echo.1.3", "echo.0.1"]
    first, unsampled, leaving = echo["workers"]
    assert (first["pid"], first["state"], first["inFlight"], first["rps"]) == (12, "ready", 2, 1.5)  # the table's state
    assert unsampled["pid"] is None and unsampled["state"] == "starting" and unsampled["rssBytes"] == 0
    assert (leaving["pid"], leaving["state"], leaving["served"]) == (11, "draining", 7)
    assert (echo["restarts"], echo["recycles"]) == (2, 1)
    assert crashy["workers"] == [] and body["failed"] == [
        {"id": "crashy", "reason": "worker exited 3 times within 30s"}
    ]
    assert body["kernel"] == {
        "version": "9.9",
        "startedAt": 1.0,
        "uptimeSeconds": 10.0,
        "mount": "/api",
        "answeredBy": 5,
    }
    assert body["gateways"] == [] and body["supervisor"]["pid"] == 1 and body["sampledAt"] == 10.0


def test_before_the_first_tick_the_snapshot_lists_the_table_without_figures() -> None:
    states = [PluginState("echo", "starting", [], ["echo.0.1"])]
    body = build_snapshot(states, None, [], version="1", mount="/api", now=3.0, gateway_pid=5)
    assert body["sampledAt"] is None and body["supervisor"] is None and body["kernel"]["uptimeSeconds"] is None
    assert body["plugins"][0]["workers"] == [
        {
            "id": "echo.0.1",
            "pid": None,
            "state": "starting",
            "startedAt": None,
            "rssBytes": 0,
            "cpuSeconds": 0.0,
            "heartbeatRttMs": 0.0,
            "served": 0,
            "inFlight": 0,
            "rps": 0.0,
            "p50Ms": 0.0,
            "p99Ms": 0.0,
        }
    ]


def test_a_worker_shows_its_handler_latency_after_traffic(kernel: KernelProcess) -> None:
    for _ in range(5):
        assert httpx.get(kernel.url + "/api/echo/sleep", params={"s": 0.05}, timeout=10).status_code == 200

    def echo_latency() -> dict[str, Any] | None:
        workers = plugin_of(snapshot(kernel), "echo")["workers"]
        return next((w for w in workers if w["p50Ms"] >= 50), None)

    worker = wait_for(echo_latency, 10, "echo's worker never showed the 50 ms its handler took")
    assert worker["p99Ms"] >= worker["p50Ms"]

"""``backend.metrics``: one scrape of every process, exact after known traffic, monotonic across restarts."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kernel.testing import KernelProcess, make_package, wait_for
from tests import plugins
from tests.conftest import base_config

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def metered_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("metered-site")
    make_package(root, "kernel-test-metered", {"test_metered": plugins.METERED}, {"metered": "test_metered:plugin"})
    make_package(root, "kernel-test-echo", {"test_echo": plugins.ECHO}, {"echo": "test_echo:plugin"})
    return root


@pytest.fixture(scope="module")
def kernel(metered_site: Path) -> Iterator[KernelProcess]:
    config = base_config(processes=2)
    k = KernelProcess(config, paths=[metered_site]).start()
    yield k
    k.stop()


def scrape(kernel: KernelProcess, accept: str = "") -> Samples:
    resp = httpx.get(kernel.metrics_url, headers={"accept": accept} if accept else {}, timeout=10)
    assert resp.status_code == 200, resp.text
    samples: Samples = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def count(kernel: KernelProcess, status_class: str, plugin_id: str = "metered") -> float:
    return value(
        scrape(kernel), "kernel_http_request_duration_seconds_count", plugin_id=plugin_id, status_class=status_class
    )


def worker_pid(client: httpx.Client) -> int:
    resp = client.get("/api/metered/hit")
    assert resp.status_code == 200
    return int(resp.json()["pid"])


def test_known_traffic_is_counted_exactly_across_two_gateways(kernel: KernelProcess) -> None:
    before = {c: count(kernel, c) for c in ("2xx", "4xx", "5xx")}
    body_before = value(scrape(kernel), "kernel_http_request_body_bytes_total", plugin_id="metered")
    with httpx.Client(base_url=kernel.url, timeout=10) as client:
        for _ in range(7):
            assert client.get("/api/metered/hit").status_code == 200
        for _ in range(3):
            assert client.get("/api/metered/nothing-here").status_code == 404
        for _ in range(2):
            assert client.get("/api/metered/fail").status_code == 500
        assert client.post("/api/metered/upload", content=b"x" * 1000).json() == {"received": 1000}

    wanted = {"2xx": before["2xx"] + 8, "4xx": before["4xx"] + 3, "5xx": before["5xx"] + 2}
    wait_for(lambda: {c: count(kernel, c) for c in wanted} == wanted, timeout=10, message="request counts")
    samples = scrape(kernel)
    assert value(samples, "kernel_http_request_body_bytes_total", plugin_id="metered") == body_before + 1000
    assert value(samples, "kernel_http_response_body_bytes_total", plugin_id="metered") > 0
    inf = value(
        samples, "kernel_http_request_duration_seconds_bucket", plugin_id="metered", status_class="2xx", le="+Inf"
    )
    assert inf == wanted["2xx"]  # the buckets merge: the last one holds every request
    assert value(samples, "kernel_plugin_state", plugin_id="metered", state="ready") == 1


def test_counters_stay_monotonic_when_a_worker_is_killed(kernel: KernelProcess) -> None:
    with httpx.Client(base_url=kernel.url, timeout=10) as client:
        old = worker_pid(client)
        hits = value(scrape(kernel), "metered_hits_total")
        workers_before = _ready_workers(scrape(kernel))
        restarts = value(scrape(kernel), "kernel_worker_restarts_total", plugin_id="metered")
        os.kill(old, signal.SIGKILL)

        def new_pid() -> int | None:
            try:
                resp = client.get("/api/metered/hit")
            except httpx.HTTPError:
                return None
            pid = int(resp.json()["pid"]) if resp.status_code == 200 else None
            return pid if pid not in (None, old) else None

        pid = wait_for(new_pid, timeout=15, message="a replacement worker")
        for _ in range(3):
            client.get("/api/metered/hit")
    # the plugin's own counter: what the dead worker counted stays in the sum
    wait_for(lambda: value(scrape(kernel), "metered_hits_total") >= hits + 4, timeout=10, message="hits")

    def new_worker_ready() -> bool:  # the supervisor's figures come at its next tick
        return _ready_workers(scrape(kernel)) - workers_before != set()

    wait_for(new_worker_ready, timeout=10, message="the new worker, ready, in the supervisor's figures")
    samples = scrape(kernel)
    assert value(samples, "kernel_worker_restarts_total", plugin_id="metered") == restarts + 1
    rss = {
        dict(labels)["process"]: v
        for (name, labels), v in samples.items()
        if name == "kernel_process_resident_memory_bytes"
    }
    assert rss["supervisor"] > 0 and rss["gateway-0"] > 0 and rss["gateway-1"] > 0
    assert any(p.startswith("metered.") and v > 0 for p, v in rss.items())
    assert pid != old


def test_a_killed_gateway_keeps_its_counts(kernel: KernelProcess) -> None:
    assert httpx.get(f"{kernel.url}/api/metered/hit", timeout=10).status_code == 200  # a count to keep
    wait_for(
        lambda: (
            value(scrape(kernel), "kernel_http_request_duration_seconds_count", plugin_id="metered", status_class="2xx")
            > 0
        )
    )
    total = count(kernel, "2xx")
    gateways = _gateway_pids(kernel)
    os.kill(gateways[0], signal.SIGKILL)
    wait_for(lambda: len(set(_gateway_pids(kernel)) - set(gateways)) == 1, timeout=15, message="a new gateway")
    assert count(kernel, "2xx") >= total  # nothing went back


def test_services_and_tasks_are_measured(kernel: KernelProcess) -> None:
    before = scrape(kernel)
    runs = value(before, "kernel_scheduler_task_runs_total", plugin_id="metered", task_id="tick", result="succeeded")
    with httpx.Client(base_url=kernel.url, timeout=10) as client:
        resp = client.post("/api/metered/.scheduler/v1/tasks/tick/trigger")
        assert resp.status_code in (200, 202, 204), resp.text
        for _ in range(2):  # the first may be the miss that fills the cache: the second is a hit
            assert client.get("/api/metered/hit").status_code == 200
        assert client.get("/api/metered/query").json() == {"one": 1}
    wait_for(
        lambda: (
            value(
                scrape(kernel),
                "kernel_scheduler_task_runs_total",
                plugin_id="metered",
                task_id="tick",
                result="succeeded",
            )
            == runs + 1
        ),
        timeout=10,
        message="the task's run",
    )
    samples = scrape(kernel)
    assert value(samples, "kernel_cache_requests_total", plugin_id="metered", result="hit") >= 1
    assert value(samples, "kernel_scheduler_task_duration_seconds_count", plugin_id="metered", task_id="tick") >= 1
    assert value(samples, "kernel_database_pool_connections", plugin_id="metered", state="open") >= 1


def test_openmetrics_when_asked(kernel: KernelProcess) -> None:
    resp = httpx.get(kernel.metrics_url, headers={"accept": "application/openmetrics-text; version=1.0.0"})
    assert resp.headers["content-type"].startswith("application/openmetrics-text")
    assert resp.text.rstrip().endswith("# EOF")


def test_metrics_off(metered_site: Path) -> None:
    config: dict[str, Any] = base_config()
    config["backend"]["metrics"] = {"enabled": False}
    with KernelProcess(config, paths=[metered_site]) as k:
        assert httpx.get(f"{k.url}/api/metered/hit").status_code == 200
        assert "metrics on" not in k.output()


def _ready_workers(samples: Samples) -> set[str]:
    return {
        dict(labels)["process"]
        for (name, labels), v in samples.items()
        if name == "kernel_worker_state"
        and v == 1
        and dict(labels)["state"] == "ready"
        and dict(labels)["plugin_id"] == "metered"
    }


def _gateway_pids(kernel: KernelProcess) -> list[int]:
    return _children_pids(kernel, "kernel.gateway")


def _children_pids(kernel: KernelProcess, module: str) -> list[int]:
    assert kernel.proc is not None
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == kernel.proc.pid and module.encode() in cmdline:
            found.append(int(entry.name))
    return sorted(found)


def test_on_the_main_port_for_operators_only(metered_site: Path) -> None:
    from tests.conftest import RESTRICTED_TOKEN, TOKEN

    config: dict[str, Any] = base_config()
    config["backend"]["metrics"] = {"listener": "main", "path": "/.kernel/metrics"}
    config["backend"]["dashboard"] = {"operators": ["external:ci-bot"]}
    with KernelProcess(config, paths=[metered_site]) as k:
        assert httpx.get(f"{k.url}/api/metered/hit").status_code == 200
        url = f"{k.url}/.kernel/metrics"
        assert httpx.get(url).status_code == 401
        assert httpx.get(url, headers={"authorization": f"Bearer {RESTRICTED_TOKEN}"}).status_code == 403
        resp = httpx.get(url, headers={"authorization": f"Bearer {TOKEN}"})
        assert resp.status_code == 200 and "kernel_http_request_duration_seconds" in resp.text
        assert "metrics on" not in k.output()  # no listener of their own


def test_requests_in_flight_are_seen_while_they_run(kernel: KernelProcess) -> None:
    import threading

    def in_flight() -> float:
        return value(scrape(kernel), "kernel_http_requests_in_flight", plugin_id="echo")

    slow = threading.Thread(target=lambda: httpx.get(f"{kernel.url}/api/echo/sleep", params={"s": 4}, timeout=20))
    slow.start()
    wait_for(lambda: in_flight() == 1, 10, "the running request never showed in flight")
    slow.join()
    wait_for(lambda: in_flight() == 0, 10, "the finished request stayed in flight")

"""``kernel rollout`` against a running ``kernel serve``, under load: no request fails.

One kernel (two gateway processes) serves plugin ``live`` while four clients send requests without a
pause, over kept-alive connections. Each test rolls something out with the real command and checks
what the clients saw: no failure, and the answers switching to the new worker (its pid, the version
its package reports, the config it read at start), the old worker gone; a version that cannot start
fails the command readably and leaves the old worker serving; the gateways restart one at a time.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from kernel.testing import KernelProcess, make_package, wait_for
from tests import plugins
from tests.conftest import TOKEN, base_config
from tests.dashboard.support import OPERATOR, plugin_of, snapshot

CLIENTS = 4
VERSION_PATH = "/api/live/version"


def install_live(site: Path, version: str, source: str | None = None) -> None:
    """Install package kernel-test-live ``version`` (the fixture, or ``source``) in ``site``, as pip would."""
    for old in site.glob("kernel_test_live-*.dist-info"):
        shutil.rmtree(old)
    text = plugins.LIVE.read_text() if source is None else source
    make_package(site, "kernel-test-live", {"test_live": text}, {"live": "test_live:plugin"}, version=version)


def config(greeting: str, **gateway: object) -> dict[str, Any]:
    cfg = base_config(**{"processes": 2, **gateway})
    cfg["backend"]["dashboard"] = {"operators": [OPERATOR]}  # type: ignore[index]
    cfg["live"] = {"greeting": greeting}
    return cfg


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rollout-site")
    install_live(root, "1.0.0")
    return root


@pytest.fixture(scope="module")
def kernel(site: Path) -> Iterator[KernelProcess]:
    k = KernelProcess(config("hello"), paths=[site]).start()
    yield k
    k.stop()


def rollout(kernel: KernelProcess, site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KERNEL_TOKEN": TOKEN, "PYTHONPATH": str(site)}
    return subprocess.run(
        [sys.executable, "-m", "kernel.cli", "rollout", *args, "--url", kernel.url],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


class Load:
    """Clients sending ``GET path`` without a pause until stopped; what they saw."""

    def __init__(self, url: str, path: str = VERSION_PATH) -> None:
        self.url = url
        self.path = path
        self.stop = threading.Event()
        self.failures: list[str] = []
        self.sent = 0
        self.seen: Counter[tuple[str, int]] = Counter()  # (version, pid) of the answers
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(CLIENTS)
        self._clients: list[Future[None]] = []

    def _client(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.stop.is_set():
                try:
                    r = client.get(self.path)
                    failure = "" if r.status_code == 200 else f"{r.status_code} {r.text}"
                except httpx.HTTPError as exc:
                    failure = f"{type(exc).__name__}: {exc}"
                with self._lock:
                    self.sent += 1
                    if failure:
                        self.failures.append(failure)
                    else:
                        body = r.json()
                        self.seen[(body["version"], body["pid"])] += 1

    def __enter__(self) -> Load:
        self._clients = [self._pool.submit(self._client) for _ in range(CLIENTS)]
        wait_for(lambda: self.sent >= 20, 20, "the load never got going")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for f in self._clients:
            f.result()
        self._pool.shutdown()


def current(kernel: KernelProcess) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(kernel.url + VERSION_PATH, timeout=10).json()
    return body


def gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists()


def test_a_new_installed_version_takes_over_with_no_failed_request(kernel: KernelProcess, site: Path) -> None:
    before = current(kernel)
    install_live(site, "2.0.0", plugins.LIVE.read_text().replace('VERSION = "v1"', 'VERSION = "v2"'))
    with Load(kernel.url) as load:
        sent_before = load.sent
        proc = rollout(kernel, site, "live")
        wait_for(lambda: load.sent > sent_before + 20, 20, "no request after the rollout")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert load.failures == []
    after = current(kernel)
    assert after["version"] == "v2" and after["pid"] != before["pid"]
    assert gone(before["pid"])  # the old worker drained and exited before the command returned
    # the clients saw the old worker, then the new one, and nothing else
    assert set(load.seen) == {(before["version"], before["pid"]), ("v2", after["pid"])}, load.seen
    out = proc.stdout
    assert out.startswith("rollout r-") and "of plugin 'live'" in out
    assert "plugin 'live': installed version 2.0.0 (was 1.0.0)" in out
    assert f"new workers ready (pid {after['pid']})" in out
    assert "the old workers drain: live.0." in out and f"(pid {before['pid']})" in out
    assert "the old workers are gone" in out and "succeeded in " in out
    assert plugin_of(snapshot(kernel), "live")["version"] == "2.0.0"


def test_a_changed_config_reaches_the_new_workers(kernel: KernelProcess, site: Path) -> None:
    before = current(kernel)
    assert before["greeting"] == "hello"
    kernel.config_path.write_text(yaml.safe_dump(_listening(kernel, config("bonjour"))))
    with Load(kernel.url) as load:
        proc = rollout(kernel, site, "live")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert load.failures == []
    assert "the config changed: every process has the new one" in proc.stdout
    after = current(kernel)
    assert after["greeting"] == "bonjour" and after["pid"] != before["pid"]
    assert gone(before["pid"])


def test_a_version_that_cannot_start_fails_the_command_and_the_old_worker_keeps_serving(
    kernel: KernelProcess, site: Path
) -> None:
    before = current(kernel)
    broken = plugins.LIVE.read_text().replace('VERSION = "v1"', 'raise RuntimeError("v3 cannot start")')
    install_live(site, "3.0.0", broken)
    try:
        with Load(kernel.url) as load:
            proc = rollout(kernel, site, "live")
            sent = load.sent
            wait_for(lambda: load.sent > sent + 20, 20, "no request after the failed rollout")
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert load.failures == []
        assert set(load.seen) == {(before["version"], before["pid"])}  # the old worker served throughout
        error = proc.stderr.strip().splitlines()
        assert len(error) == 1 and error[0].startswith("kernel: rollout r-"), proc.stderr
        assert "failed after" in error[0]
        assert "plugin 'live': the new workers did not start (worker live.0." in error[0]
        assert re.search(r"exited with code \d+ before it was ready\); the running workers keep serving$", error[0])
        assert "Traceback" not in proc.stderr
        assert "RuntimeError: v3 cannot start" in kernel.output()  # the worker's own error is in the kernel's log
        assert current(kernel)["pid"] == before["pid"]
    finally:
        install_live(site, "2.0.0", plugins.LIVE.read_text().replace('VERSION = "v1"', 'VERSION = "v2"'))


def test_the_gateways_restart_one_at_a_time_with_no_failed_request(kernel: KernelProcess, site: Path) -> None:
    old = {g["id"]: g["pid"] for g in wait_for(lambda: snapshot(kernel)["gateways"], 10)}
    assert len(old) == 2
    worker = current(kernel)["pid"]
    with Load(kernel.url) as load:
        proc = rollout(kernel, site, "--gateways")
        sent = load.sent
        wait_for(lambda: load.sent > sent + 20, 20, "no request after the gateways restarted")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert load.failures == []
    lines = proc.stdout.splitlines()
    steps = [line.split("  ", 2)[-1] for line in lines if line.startswith("  ")]
    assert [s.split(" (pid")[0].split(":")[0] for s in steps] == ["gateway 0", "gateway 0", "gateway 1", "gateway 1"]
    assert all(gone(pid) for pid in old.values())

    def new_pids() -> dict[str, int] | None:
        now = {g["id"]: g["pid"] for g in snapshot(kernel)["gateways"]}
        return now if len(now) == 2 and not set(now.values()) & set(old.values()) else None

    assert set(wait_for(new_pids, 10)) == set(old)
    assert current(kernel)["pid"] == worker  # the workers never noticed


def test_a_single_hypercorn_gateway_restarts_with_no_failed_request(site: Path) -> None:
    """One gateway: connections wait in the listener's backlog while it is replaced. Hypercorn's
    HTTP/1.1 (``server: hypercorn``) leaves between two requests too."""
    k = KernelProcess(config("hello", processes=1, server="hypercorn"), paths=[site]).start()
    try:
        [old] = [g["pid"] for g in wait_for(lambda: snapshot(k)["gateways"], 10)]
        with Load(k.url) as load:
            proc = rollout(k, site, "--gateways")
            sent = load.sent
            wait_for(lambda: load.sent > sent + 20, 20, "no request after the gateway restarted")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert load.failures == []
        assert gone(old)
        assert wait_for(lambda: [g["pid"] for g in snapshot(k)["gateways"] if g["pid"] != old], 10)
    finally:
        k.stop()


def _listening(kernel: KernelProcess, cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` with the address and metrics port the kernel was started with (they stay as they are)."""
    started = yaml.safe_load(kernel.config_path.read_text())["backend"]
    cfg["backend"]["listen"] = started["listen"]
    cfg["backend"]["metrics"] = started["metrics"]
    return cfg

"""Restarts without a gap: requests wait for a starting worker; a plugin stopped for flapping is tried again."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import httpx

from kernel.testing import KernelProcess, make_package, wait_for
from tests import plugins
from tests.conftest import TOKEN, base_config

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_requests_wait_for_the_restarting_worker_instead_of_failing(site: Path) -> None:
    with KernelProcess(base_config(), paths=[site]) as k, httpx.Client(base_url=k.url, timeout=20) as c:
        first = c.get("/api/echo/pid", headers=AUTH).json()["pid"]
        stop = threading.Event()
        answers: list[tuple[int, str]] = []

        def hammer() -> None:
            with httpx.Client(base_url=k.url, timeout=20, headers=AUTH) as h:
                while not stop.is_set():
                    r = h.get("/api/echo/pid")
                    answers.append((r.status_code, r.text))

        threads = [threading.Thread(target=hammer) for _ in range(3)]
        for t in threads:
            t.start()
        wait_for(lambda: len(answers) > 50, message="no load")
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: any(s == 200 and str(first) not in t for s, t in answers[-3:]), 20, "echo never came back")
        seen = len(answers)
        wait_for(lambda: len(answers) > seen + 50, message="no load after the restart")
        stop.set()
        for t in threads:
            t.join()
        failed = [(s, t) for s, t in answers if s != 200]
        # only requests in flight on the killed worker may fail (one per client at most); none for want of a worker
        assert len(failed) <= 3, failed
        assert not [t for _s, t in failed if "no ready worker" in t], failed


def test_a_plugin_stopped_for_flapping_is_tried_again_after_a_cool_down(site: Path, tmp_path: Path) -> None:
    make_package(tmp_path, "kernel-test-flaky", {"test_flaky": plugins.FLAKY}, {"flaky": "test_flaky:plugin"})
    config = base_config()
    config["backend"]["workers"].update(
        {"flappingLimit": 1, "flappingWindow": 60, "restartInitialDelay": 0.05, "flappingCooldown": 0.5}
    )
    config["backend"]["startup"] = {"plugins": {"flaky": {"onPluginBootFailure": "continue"}}}
    config["flaky"] = {"counterFile": str(tmp_path / "starts"), "failures": 2}
    k = KernelProcess(config, paths=[site, tmp_path]).start(wait=False)
    try:
        wait_for(lambda: "plugin 'flaky' failed: 2 worker deaths" in k.output(), 20, k.output)
        assert "trying again in 0.5s" in k.output()
        # readiness lists flaky as failed until the retry after the cool-down works
        wait_for(lambda: "failed" not in k.readiness()[1], 20, k.output)
        assert httpx.get(k.url + "/api/flaky/ok", timeout=10).json() == {"start": 3}
        assert "plugin 'flaky': cool-down over, starting it again" in k.output()
    finally:
        k.stop()

"""SIGTERM as Kubernetes expects it, through a real ``kernel serve``: readiness 503 first, requests
served through ``backend.lifecycle.serverShutdownDelay``, then a drain that loses no request, exit 0."""

from __future__ import annotations

import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from kernel.config import Config
from kernel.settings import read_settings
from kernel.supervisor.stopping import exit_bound
from kernel.testing import KernelProcess, wait_for
from tests.conftest import base_config

DELAY = 4.0


def test_sigterm_turns_readiness_503_serves_through_the_delay_then_drains_and_exits_0(site: Path) -> None:
    config = base_config()
    config["backend"]["lifecycle"] = {"serverShutdownDelay": f"{DELAY:g}s"}  # type: ignore[index]
    config["backend"]["gateway"]["requestTimeout"] = 30  # type: ignore[index]  # the slow requests outlast 3 s
    bound = exit_bound(read_settings(Config.from_dict(config)))
    k = KernelProcess(config, paths=[site]).start()
    assert k.proc is not None
    with ThreadPoolExecutor(4) as pool, httpx.Client(base_url=k.url, timeout=30) as c:

        def get(path: str) -> int:
            with httpx.Client(base_url=k.url, timeout=30) as own:
                return own.get(path).status_code

        try:
            # in flight before SIGTERM, and still in flight once the delay is over (drained, not cut)
            before = [pool.submit(get, f"/api/echo/sleep?s={DELAY + 1:g}") for _ in range(2)]
            wait_for(lambda: c.get("/api/echo/pid").json()["sleeping"] == 2, 10, "the slow requests did not start")
            k.proc.send_signal(signal.SIGTERM)
            wait_for(lambda: k.readiness()[0] == 503, 5, "readiness did not turn 503")
            assert k.readiness() == (503, {"status": "stopping"})
            # within the delay: the instance is out of rotation but every request is still served
            assert [c.get("/api/echo/pid").status_code for _ in range(5)] == [200] * 5
            assert c.get("/.kernel/health/v1/liveness").status_code == 200
            during = pool.submit(get, f"/api/echo/sleep?s={DELAY:g}")  # ends after the delay, in the drain
            wait_for(lambda: c.get("/api/echo/pid").json()["sleeping"] == 3, 5, "the late request did not start")
            assert k.proc.poll() is None
            assert k.proc.wait(bound + 5) == 0
            assert [f.result() for f in [*before, during]] == [200, 200, 200]
        finally:
            k.stop()
    assert "serverShutdownDelay" in k.output()


def test_the_delay_is_a_duration_as_the_reference_system_writes_it() -> None:
    def delay_of(value: object) -> float:
        return read_settings(
            Config.from_dict({"backend": {"lifecycle": {"serverShutdownDelay": value}}})
        ).lifecycle.server_shutdown_delay

    assert delay_of("30s") == 30.0
    assert delay_of("PT1M") == 60.0
    assert delay_of({"seconds": 5}) == 5.0
    assert read_settings(Config.from_dict({})).lifecycle.server_shutdown_delay == 0.0

"""``kernel.supervisor.cgroups``: a cgroup per plugin holds a fork bomb, a busy loop and a runaway allocation.

Real kernels with ``attacker`` beside ``echo``; each test gives the kernel a cgroup name of its own
(``ki-<random>``) and checks the subtree is gone once the kernel stopped.
"""

from __future__ import annotations

import os
import signal
import statistics
import threading
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest

from kernel.testing import KernelProcess, wait_for
from tests.conftest import TOKEN, base_config
from tests.isolation.conftest import cgroup_dirs, started

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _kernel(config: dict[str, Any], site: Path, name: str) -> AbstractContextManager[KernelProcess]:
    """A kernel whose cgroups are ``<name>-<pid>``."""
    return started(config, site, name)


def _config(name: str, *, zygote: bool = True, **attacker: Any) -> dict[str, Any]:
    config = base_config(requestTimeout=30)
    workers = config["backend"]["workers"]  # type: ignore[index]
    workers.update({"cgroupName": name, "zygote": zygote, "plugins": {"attacker": {"limits": attacker}}})
    return config


def _line(k: KernelProcess) -> str:
    wait_for(lambda: "isolation: " in k.output(), message=k.output)
    return next(line for line in k.output().splitlines() if "isolation: " in line)


@pytest.mark.parametrize("zygote", [True, False], ids=["forked", "spawned"])
def test_a_fork_bomb_is_held_by_its_plugins_process_limit(attack_site: Path, cgroup_name: str, zygote: bool) -> None:
    with (
        _kernel(_config(cgroup_name, zygote=zygote, maxProcesses=64), attack_site, cgroup_name) as k,
        httpx.Client(base_url=k.url, timeout=60) as c,
    ):
        assert "resources: a cgroup per plugin (cgroup v" in _line(k)
        assert cgroup_dirs(cgroup_name)
        bomb = c.get("/api/attacker/fork", params={"n": 1000})
        assert bomb.status_code == 200, bomb.text
        forked = bomb.json()["got"]
        assert 0 < forked < 64, forked  # its own threads count too: fewer than 64 forks
        assert c.get("/api/echo/pid", headers=AUTH).status_code == 200  # the other plugin serves
        assert c.get("/api/attacker/me").status_code == 200  # and the attacker itself, once its forks are gone
    assert cgroup_dirs(cgroup_name) == [], k.output()


def _timed(c: httpx.Client, n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        assert c.get("/api/echo/pid", headers=AUTH).status_code == 200
        times.append(time.perf_counter() - start)
    return times


def _p99(times: list[float]) -> float:
    return statistics.quantiles(times, n=100)[98]


def test_a_plugin_burning_cpu_under_its_cap_leaves_the_others_latency(attack_site: Path, cgroup_name: str) -> None:
    """The attacker runs four busy loops (two cores here) under ``cpuPercent: 50``: echo's p99 with them
    running stays within 5x of its p99 with them stopped (without the cap: 12x here). Quiet and loaded rounds alternate (the test stops
    and continues the loops), so what else the machine does weighs on both alike."""
    with (
        _kernel(_config(cgroup_name, cpuPercent=50), attack_site, cgroup_name) as k,
        httpx.Client(base_url=k.url, timeout=30) as c,
    ):
        assert "resources: a cgroup per plugin" in _line(k)
        _timed(c, 50)  # warm
        burners = c.get("/api/attacker/burn", params={"seconds": 120, "procs": 4}).json()["got"]["pids"]
        assert len(burners) == 4
        quiet: list[float] = []
        loaded: list[float] = []
        try:
            for _ in range(5):
                _signal(burners, signal.SIGSTOP)
                quiet += _timed(c, 100)
                _signal(burners, signal.SIGCONT)
                loaded += _timed(c, 100)
        finally:
            _signal(burners, signal.SIGKILL)
    ratio = _p99(loaded) / _p99(quiet)
    assert ratio < 5, (
        f"echo p99 {_p99(loaded) * 1000:.1f} ms with the attacker burning, {_p99(quiet) * 1000:.1f} ms quiet"
    )


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        os.kill(pid, sig)


def test_a_runaway_allocation_is_killed_at_its_plugins_memory_limit_and_restarted(
    attack_site: Path, cgroup_name: str
) -> None:
    config = _config(cgroup_name, memoryMaxMb=200, memorySoftMb=0, memoryHardMb=0)
    with _kernel(config, attack_site, cgroup_name) as k, httpx.Client(base_url=k.url, timeout=30) as c:
        before = c.get("/api/attacker/me").json()["got"]["pid"]
        served: list[int] = []
        stop = threading.Event()

        def others() -> None:  # echo keeps answering all along
            while not stop.is_set():
                served.append(c.get("/api/echo/pid", headers=AUTH).status_code)

        t = threading.Thread(target=others)
        t.start()
        try:
            hog = c.get("/api/attacker/hog", params={"mb": 600})
            assert hog.status_code >= 500, hog.text  # its worker died under the request
            wait_for(lambda: "killed by the OOM killer" in k.output(), timeout=30, message=k.output)
            after = wait_for(lambda: c.get("/api/attacker/me").json()["got"]["pid"], timeout=60)
        finally:
            stop.set()
            t.join()
        assert after != before  # restarted
        line = next(x for x in k.output().splitlines() if "killed by the OOM killer" in x)
        assert "of plugin 'attacker' died (signal 9, killed by the OOM killer" in line
        assert "memory limit of 200 MB (memoryMaxMb)" in line
        assert served and set(served) == {200}, served[-5:]
    assert cgroup_dirs(cgroup_name) == []


def test_cgroups_off_is_said_at_start_up(attack_site: Path, cgroup_name: str) -> None:
    config = _config(cgroup_name)
    config["backend"]["workers"]["cgroups"] = False  # type: ignore[index]
    with _kernel(config, attack_site, cgroup_name) as k:
        assert "resources: cgroups off (backend.workers.cgroups is false); CPU and processes unbounded" in _line(k)
        assert cgroup_dirs(cgroup_name) == []

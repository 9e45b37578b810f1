"""``kernel serve`` says at start-up, in one line, what keeps one plugin from another and what is shared."""

from __future__ import annotations

from pathlib import Path

from kernel.testing import KernelProcess, make_package, wait_for
from tests import plugins
from tests.conftest import base_config
from tests.isolation.conftest import cgroups_writable


def _line(k: KernelProcess) -> str:
    wait_for(lambda: "isolation: " in k.output(), message=k.output)
    return next(line for line in k.output().splitlines() if "isolation: " in line)


def test_the_default_line_names_what_is_in_force_and_what_is_shared(tmp_path: Path) -> None:
    make_package(tmp_path, "kernel-test-echo", {"test_echo": plugins.ECHO}, {"echo": "test_echo:plugin"})
    with KernelProcess(base_config(), paths=[tmp_path]) as k:
        line = _line(k)
    assert "config scoped per plugin" in line
    assert "OS users: none (every worker runs as the kernel's user)" in line
    assert "database: SQLite, a file per plugin" in line
    if cgroups_writable():
        assert "resources: a cgroup per plugin (cgroup v" in line
        assert "CPU uncapped, weight 100, 512 processes, memory 2048 MB; memory 512/1024 MB" in line
    else:
        assert "resources: cgroups off (" in line
    assert "(soft/hard, per worker); disk unbounded" in line
    assert line.rstrip().endswith("sandbox: none (backend.workers.sandbox off)")


def test_the_line_follows_the_settings(tmp_path: Path) -> None:
    make_package(tmp_path, "kernel-test-echo", {"test_echo": plugins.ECHO}, {"echo": "test_echo:plugin"})
    config = base_config()
    config["backend"]["workers"] = {
        "scopeConfig": False,
        "cgroups": False,
        "limits": {"memorySoftMb": 0, "memoryHardMb": 0},
    }
    config["backend"]["cache"] = {"store": "memory"}
    with KernelProcess(config, paths=[tmp_path]) as k:
        line = _line(k)
    assert "config: the whole config to every worker (scopeConfig off)" in line
    assert "cache: in each worker's own memory" in line
    assert (
        "resources: cgroups off (backend.workers.cgroups is false); CPU and processes unbounded; memory unbounded"
        in line
    )

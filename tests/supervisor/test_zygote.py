"""Workers forked from the zygote (``kernel.zygote``, ``kernel.supervisor.zygote``), through ``kernel serve``.

The plugin ``imported`` logs the pid of every process that imports it (its workers, and the kernel's
plugin scan, ``kernel.plugin_scan``) and answers ``/whoami`` with its
pid, its parent's and the size of its frozen heap (a worker forked from the zygote shares the zygote's
``gc.freeze``d objects; a spawned one has none).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil  # type: ignore[import-untyped]
import pytest

from kernel.testing import KernelProcess, make_package, wait_for
from tests import plugins
from tests.conftest import base_config

IMPORTED = plugins.FIXTURES / "imported.py"


def start(tmp_path: Path, zygote: bool | None = None) -> tuple[KernelProcess, Path]:
    site = make_package(
        tmp_path / "site", "kernel-plugin-imported", {"test_imported": IMPORTED}, {"imported": "test_imported:plugin"}
    )
    log = tmp_path / "imported.log"
    log.touch()
    config: dict[str, Any] = base_config()
    if zygote is not None:
        config["backend"]["workers"]["zygote"] = zygote
    kernel = KernelProcess(config, paths=[site], env={"IMPORTED_LOG": str(log)})
    return kernel.start(), log


@pytest.fixture
def kernel(tmp_path: Path) -> Iterator[tuple[KernelProcess, Path]]:
    k, log = start(tmp_path)
    try:
        yield k, log
    finally:
        k.stop()


def whoami(k: KernelProcess) -> dict[str, Any]:
    r = httpx.get(f"{k.url}/api/imported/whoami", timeout=5)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def zygotes(k: KernelProcess) -> list[int]:
    """The kernel's live zygotes (a killed one is a zombie until the supervisor reaps it)."""
    assert k.proc is not None
    found = []
    for p in psutil.Process(k.proc.pid).children():
        try:
            if "--zygote" in " ".join(p.cmdline()):
                found.append(p.pid)
        except (psutil.ZombieProcess, psutil.NoSuchProcess):
            continue
    return found


def assert_own_log_pipe(k: KernelProcess, pid: int) -> None:
    """The worker's stdout and stderr are one pipe of its own, which the supervisor reads (``logrelay``)."""
    assert k.proc is not None
    out, err = (os.readlink(f"/proc/{pid}/fd/{fd}") for fd in (1, 2))
    assert out == err and out.startswith("pipe:")
    others = {os.readlink(f"/proc/{p}/fd/2") for p in [k.proc.pid, *zygotes(k)]}
    assert out not in others  # neither the kernel's output nor the zygote's


def importers(log: Path) -> set[int]:
    return {int(line) for line in log.read_text().split()}


def test_a_worker_is_forked_from_the_zygote_as_the_kernels_own_child(kernel: tuple[KernelProcess, Path]) -> None:
    k, _ = kernel
    me = whoami(k)
    assert k.proc is not None and me["ppid"] == k.proc.pid  # the supervisor reaps it, and it dies with it
    assert me["frozen"] > 0  # the zygote's frozen heap: it was forked, not spawned
    assert zygotes(k) and me["pid"] not in zygotes(k)
    assert "kernel.worker imported.0." in " ".join(psutil.Process(me["pid"]).cmdline())  # what ps shows
    assert_own_log_pipe(k, me["pid"])


def test_the_zygote_never_imports_plugin_code(kernel: tuple[KernelProcess, Path]) -> None:
    k, log = kernel
    me = whoami(k)
    (zygote,) = zygotes(k)
    assert me["pid"] in importers(log)  # the module logs its importers: the worker did
    assert zygote not in importers(log)
    assert not any("test_imported" in m.path for m in psutil.Process(zygote).memory_maps() if m.path)


def test_a_killed_zygote_is_replaced_and_running_workers_never_notice(kernel: tuple[KernelProcess, Path]) -> None:
    k, _ = kernel
    before = whoami(k)
    (old,) = zygotes(k)
    os.kill(old, signal.SIGKILL)
    new = wait_for(lambda: [z for z in zygotes(k) if z != old], message="no new zygote")
    assert whoami(k)["pid"] == before["pid"]  # the worker kept running
    os.kill(before["pid"], signal.SIGKILL)  # its replacement comes from the new zygote
    after = wait_for(lambda: (w := whoami(k))["pid"] != before["pid"] and w, timeout=15, ignore=(AssertionError,))
    assert after["frozen"] > 0 and after["ppid"] == before["ppid"]
    assert zygotes(k) == new


def test_a_killed_forked_worker_is_restarted_with_its_exit_seen(kernel: tuple[KernelProcess, Path]) -> None:
    k, _ = kernel
    victim = whoami(k)["pid"]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: whoami(k)["pid"] != victim, timeout=15, ignore=(AssertionError, httpx.HTTPError))
    wait_for(lambda: "died (signal 9)" in k.output(), message="the supervisor did not read the exit code")
    assert not psutil.pid_exists(victim) or psutil.Process(victim).status() != psutil.STATUS_ZOMBIE


def test_with_the_zygote_off_workers_are_spawned(tmp_path: Path) -> None:
    k, log = start(tmp_path, zygote=False)
    try:
        me = whoami(k)
        assert me["frozen"] == 0 and zygotes(k) == []
        assert k.proc is not None and me["ppid"] == k.proc.pid and me["pid"] in importers(log)
        assert_own_log_pipe(k, me["pid"])
    finally:
        k.stop()

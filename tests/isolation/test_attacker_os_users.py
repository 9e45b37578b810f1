"""The attacker suite's rows that need OS users: signals, ``/proc``, another plugin's SQLite files.

Without OS users every worker runs as the kernel's user, and Linux lets a process signal, trace and read
the memory of any other process of its user: these rows are open by default (``docs/trust-model.md``).
With ``backend.workers.plugins.<pluginId>.user`` (or ``backend.workers.user``) and ``runtimeGroup``,
the kernel running as root, each plugin's workers run as a user of their own, and Linux refuses the
attacker each of them. Here the attacker and its victims ``ledger`` (SQLite), ``echo`` and ``memo`` each
run as a user made for this test (``ki-<random>-<plugin>``, removed after), in a kernel with the rest of
the default settings (config scoped, a cgroup per plugin).
"""

from __future__ import annotations

import grp
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from kernel.testing import KernelProcess
from tests.conftest import TOKEN, base_config
from tests.isolation.conftest import make_attack_site, remove_cgroups
from tests.supervisor.test_os_users import python_for_users

AUTH = {"Authorization": f"Bearer {TOKEN}"}
PLUGINS = ("attacker", "ledger", "echo", "memo")


@dataclass
class Scene:
    kernel: KernelProcess
    client: httpx.Client
    data: Path
    users: dict[str, str]


@pytest.fixture(scope="module")
def accounts() -> Iterator[tuple[dict[str, str], str]]:
    """A user per plugin and a runtime group, ``ki-<random>-*``, deleted after."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        pytest.skip("running workers as other OS users needs Linux and a test run as root (to create the users)")
    if not shutil.which("useradd") or not shutil.which("groupadd"):
        pytest.skip("useradd/groupadd are not installed")
    tag = f"ki-{secrets.token_hex(3)}"
    users = {p: f"{tag}-{p}" for p in PLUGINS}
    group = f"{tag}-rt"
    try:
        subprocess.run(["groupadd", "--system", group], check=True, capture_output=True)
        for name in users.values():
            command = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name]
            subprocess.run(command, check=True, capture_output=True)
        yield users, group
    finally:
        for name in users.values():
            subprocess.run(["userdel", name], check=False, capture_output=True)
        subprocess.run(["groupdel", group], check=False, capture_output=True)


@pytest.fixture(scope="module")
def scene(accounts: tuple[dict[str, str], str]) -> Iterator[Scene]:
    users, group = accounts
    shared = Path(tempfile.mkdtemp(prefix="ki-attack-users-"))
    shared.chmod(0o755)
    try:
        python = python_for_users(shared, users["attacker"])
        site = make_attack_site(shared / "site")
        data = shared / "data"
        config = base_config(requestTimeout=30)
        workers: dict[str, Any] = config["backend"]["workers"]  # type: ignore[index]
        workers.update({"runtimeGroup": group, "plugins": {p: {"user": u} for p, u in users.items()}})
        config["backend"]["database"] = {"client": "sqlite", "connection": {"directory": str(data)}}  # type: ignore[index]
        cgroup_name = workers["cgroupName"] = f"ki-{secrets.token_hex(4)}"
        kernel = KernelProcess(config, paths=[site])
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(sys, "executable", python)  # its workers run what the kernel runs
            kernel.start(timeout=120)
        try:
            with httpx.Client(base_url=kernel.url, timeout=60) as client:
                assert client.post("/api/ledger/entries", params={"body": "ledger's own"}).status_code == 200
                yield Scene(kernel, client, data, users)
        finally:
            kernel.stop()
            remove_cgroups(cgroup_name)
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def _try(c: httpx.Client, route: str, **params: Any) -> dict[str, Any]:
    resp = c.get(f"/api/attacker/{route}", params=params)
    assert resp.status_code == 200, resp.text
    answer: dict[str, Any] = resp.json()
    return answer


def _denied(answer: dict[str, Any]) -> None:
    assert answer["ok"] is False and answer["error"].startswith("PermissionError"), answer


def _echo_pid(c: httpx.Client) -> int:
    pid: int = c.get("/api/echo/pid", headers=AUTH).json()["pid"]
    return pid


def test_the_attacker_runs_as_its_own_user(scene: Scene) -> None:
    assert _try(scene.client, "me")["got"]["uid"] == pwd.getpwnam(scene.users["attacker"]).pw_uid
    assert grp.getgrgid(os.stat(scene.data / "ledger").st_gid)  # ledger's directory exists, its own


def test_it_cannot_signal_another_worker(scene: Scene) -> None:
    echo = _echo_pid(scene.client)
    _denied(_try(scene.client, "kill", pid=echo))
    assert _echo_pid(scene.client) == echo  # the same worker serves on


def test_it_cannot_read_another_workers_environment_or_memory_nor_the_kernels(scene: Scene) -> None:
    assert scene.kernel.proc is not None
    for pid in (_echo_pid(scene.client), scene.kernel.proc.pid):
        for what in ("environ", "mem"):
            _denied(_try(scene.client, "proc", pid=pid, what=what))
    me = _try(scene.client, "me")["got"]["pid"]
    assert _try(scene.client, "proc", pid=me, what="environ")["ok"] is True  # its own: the route works


def test_it_cannot_open_another_plugins_sqlite_files(scene: Scene) -> None:
    ledger = scene.data / "ledger" / "ledger.sqlite"
    assert ledger.exists()
    for path in (ledger, scene.data / "ledger"):
        _denied(_try(scene.client, "file", path=str(path)))
    assert "ledger's own" in scene.client.get("/api/ledger/entries").json()["entries"]

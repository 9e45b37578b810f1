"""What the isolation suite shares: the attacker plugin beside its victims, and Redis logins of its own.

Every Redis ACL user and key a test makes carries the prefix ``ki-test-<random>`` and is removed after
the test, also when it fails; the ``default`` user is never touched.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil
import pytest
import redis

from kernel.testing import KernelProcess, make_package
from tests import plugins

REDIS = "127.0.0.1:6379"


@pytest.fixture(scope="session")
def attack_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_attack_site(tmp_path_factory.mktemp("attack-site"))


def make_attack_site(root: Path) -> Path:
    """``root`` with ``attacker`` beside its victims ``memo`` (cache), ``ledger`` (database) and ``echo``."""
    for dist, module, source, plugin in [
        ("kernel-test-attacker", "test_attacker", plugins.ATTACKER, "attacker"),
        ("kernel-test-memo", "test_memo", plugins.MEMO, "memo"),
        ("kernel-test-ledger", "test_ledger", plugins.LEDGER, "ledger"),
        ("kernel-test-echo", "test_echo", plugins.ECHO, "echo"),
    ]:
        make_package(root, dist, {module: source}, {plugin: f"{module}:plugin"})
    return root


@dataclass(frozen=True)
class RedisAdmin:
    """A login of the test's own that may do everything, as a kernel's would (``url``), and its key prefix."""

    name: str
    password: str
    prefix: str

    @property
    def url(self) -> str:
        return f"redis://{quote(self.name, safe='')}:{quote(self.password, safe='')}@{REDIS}/0"

    def users(self) -> list[str]:
        """The ACL users under this test's prefix, its admin left out."""
        with redis.Redis.from_url(f"redis://{REDIS}/0") as r:
            names = [n.decode() if isinstance(n, bytes) else n for n in r.acl_users()]
        return sorted(n for n in names if n.startswith(self.prefix) and n != self.name)


@pytest.fixture
def redis_admin() -> Iterator[RedisAdmin]:
    yield from _redis_admin()


@pytest.fixture(scope="module")
def module_redis_admin() -> Iterator[RedisAdmin]:
    yield from _redis_admin()


def _redis_admin() -> Iterator[RedisAdmin]:
    """A Redis login like a kernel's; its users and keys removed after (``ki-test-<random>``)."""
    tag = f"ki-test-{secrets.token_hex(4)}"
    admin = RedisAdmin(f"{tag}-admin", secrets.token_urlsafe(16), f"{tag}:")
    with redis.Redis.from_url(f"redis://{REDIS}/0") as r:
        r.execute_command("ACL", "SETUSER", admin.name, "on", f">{admin.password}", "~*", "&*", "+@all")
        try:
            yield admin
        finally:
            for name in r.acl_users():
                name = name.decode() if isinstance(name, bytes) else name
                if name.startswith(tag) and name != "default":
                    r.execute_command("ACL", "DELUSER", name)
            for key in r.scan_iter(match=f"{tag}*", count=1000):
                r.delete(key)


def worker_pids(kernel: KernelProcess, plugin: str) -> list[int]:
    """The pids of ``plugin``'s workers."""
    assert kernel.proc is not None
    found = []
    for child in psutil.Process(kernel.proc.pid).children(recursive=True):
        try:
            cmd = child.cmdline()
        except psutil.Error:
            continue
        if len(cmd) >= 4 and cmd[2] == "kernel.worker" and cmd[3].startswith(f"{plugin}."):
            found.append(child.pid)
    return found


CGROUP_ROOTS = [Path("/sys/fs/cgroup")]


def cgroup_dirs(name: str) -> list[Path]:
    """The kernel subtrees ``<name>-<pid>`` left anywhere under the cgroup mounts (none, once a kernel stopped)."""
    found: list[Path] = []
    for root in CGROUP_ROOTS:
        # os.walk, not rglob: other tests' kernels remove their groups while this walks (a folder gone is skipped)
        for parent, folders, _ in os.walk(root):
            for folder in folders:
                if folder.startswith(f"{name}-") and folder.removeprefix(f"{name}-").isdigit():
                    found.append(Path(parent, folder))
    return found


def cgroups_writable() -> bool:
    from kernel.supervisor.cgroups import Cgroups

    probe, _ = Cgroups.open(f"ki-probe-{secrets.token_hex(3)}")
    if probe is None:
        return False
    probe.close()
    return True


@pytest.fixture
def cgroup_name() -> Iterator[str]:
    """A ``backend.workers.cgroupName`` of the test's own; what a failed test left is killed and removed."""
    if not cgroups_writable():
        pytest.skip("cgroups are not writable here (not root, or no cpu/pids/memory hierarchy)")
    name = f"ki-{secrets.token_hex(4)}"
    yield name
    remove_cgroups(name)


def remove_cgroups(name: str) -> None:
    """The subtrees ``<name>-<pid>`` a kernel left (one killed before it could remove them), processes and all."""
    from kernel.supervisor.cgroups import _empty, _remove_tree

    for directory in cgroup_dirs(name):
        for group in directory.iterdir():
            if group.is_dir():
                _empty(group)
        _remove_tree(directory)


@contextmanager
def started(config: dict[str, Any], site: Path, cgroup_name: str = "") -> Iterator[KernelProcess]:
    """A kernel started with a generous wait (the shared machine may be loaded), stopped after; with
    ``cgroup_name``, its cgroups are ``<cgroup_name>-<pid>``, removed after whatever happened."""
    if cgroup_name:
        config.setdefault("backend", {}).setdefault("workers", {})["cgroupName"] = cgroup_name
    kernel = KernelProcess(config, paths=[site])
    try:
        yield kernel.start(timeout=120)
    finally:
        kernel.stop()
        if cgroup_name:
            remove_cgroups(cgroup_name)

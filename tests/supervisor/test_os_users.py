"""Plugins that do not trust each other, each under an OS user of its own (``backend.workers.plugins.<id>.user``).

A real ``kernel serve`` runs plugins ``tenant-a`` and ``tenant-b`` as users ``kernel-test-a`` and
``kernel-test-b`` (created here when missing, and kept for the next run). Both serve; each worker runs as
its user (``/proc/<pid>/status``), with the runtime group as its only other group; each plugin's SQLite
files are its user's alone, so ``tenant-a``'s handler cannot read ``tenant-b``'s file, nor its process's
environment, nor signal it; a local user outside the runtime group cannot even reach the kernel's
sockets; a killed worker comes back as the same user. A user that does not exist, or a kernel that is not
root, is a clear error at start.

The test users must be able to run the kernel's Python. Where it lives under a private home (pyenv in
``/root``, mode 0700), the kernel is run by a venv made from the system's Python of the same version
that reuses this environment's packages; with neither, the tests skip, saying why.
"""

from __future__ import annotations

import glob
import grp
import os
import pwd
import shutil
import signal
import site
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from kernel.testing import KernelProcess, make_package, wait_for
from tests import plugins
from tests.conftest import base_config

USER_A, USER_B, OUTSIDER = "kernel-test-a", "kernel-test-b", "kernel-test-c"
GROUP = "kernel-test-workers"
TENANT = plugins.FIXTURES / "tenant.py"
ROOT = Path(__file__).resolve().parents[2]

needs_root = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.geteuid() != 0,
    reason="running workers as other OS users needs Linux and a test run as root (to create the users)",
)


@dataclass
class Tenants:
    kernel: KernelProcess
    client: httpx.Client
    data: Path
    runtime_gid: int


# ----------------------------------------------------------------------------- the machine


def _ensure_accounts() -> None:
    """The test users and the runtime group, made once per machine (``useradd --system``), then reused."""
    if not shutil.which("useradd") or not shutil.which("groupadd"):
        pytest.skip("useradd/groupadd are not installed")
    try:
        grp.getgrnam(GROUP)
    except KeyError:
        subprocess.run(["groupadd", "--system", GROUP], check=False, capture_output=True)
    for user in (USER_A, USER_B, OUTSIDER):
        try:
            pwd.getpwnam(user)
        except KeyError:
            command = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user]
            subprocess.run(command, check=False, capture_output=True)  # a parallel run may make it first
    for name in (USER_A, USER_B, OUTSIDER):
        pwd.getpwnam(name)  # KeyError: useradd failed
    grp.getgrnam(GROUP)


def _cannot_run(python: str, user: str) -> str:
    """``""`` when ``user`` can run ``python`` and import the worker's runtime, else why not."""
    try:
        done = subprocess.run(
            [python, "-c", "import kernel.worker"], user=user, cwd=ROOT, capture_output=True, timeout=120
        )
    except OSError as exc:
        return f"{exc.strerror}: {exc.filename}"
    lines = done.stderr.decode(errors="replace").strip().splitlines()
    return "" if done.returncode == 0 else (lines[-1] if lines else f"exit code {done.returncode}")


def python_for_users(shared: Path, user: str = USER_A) -> str:
    """An interpreter the test users can run with this environment's packages: this one, else a venv of
    the system's Python of the same version (a ``.pth`` adds this environment's site-packages)."""
    why = _cannot_run(sys.executable, user)
    if not why:
        return sys.executable
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    system = Path(f"/usr/bin/python{version}")
    if not system.exists():
        pytest.skip(f"user {user} cannot run {sys.executable} ({why}) and there is no {system}")
    venv = shared / "python"
    subprocess.run([str(system), "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True)
    adds = "; ".join(f"site.addsitedir({p!r})" for p in site.getsitepackages())
    (venv / "lib" / f"python{version}" / "site-packages" / "kernel-test-env.pth").write_text(f"import site; {adds}\n")
    python = str(venv / "bin" / "python")
    why_not = _cannot_run(python, user)
    if why_not:
        pytest.skip(f"user {user} cannot run {sys.executable} ({why}) nor a venv of {system} ({why_not})")
    return python


@pytest.fixture(scope="module")
def shared() -> Iterator[Path]:
    """A directory every test user can read: the plugins' packages, the interpreter, the data directory."""
    path = Path(tempfile.mkdtemp(prefix="kernel-os-users-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def python(shared: Path) -> str:
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        pytest.skip("running workers as other OS users needs Linux and a test run as root (to create the users)")
    _ensure_accounts()
    return python_for_users(shared)


@pytest.fixture(scope="module")
def tenant_site(shared: Path) -> Path:
    root = shared / "site"
    for name in ("a", "b"):
        make_package(
            root,
            f"kernel-test-tenant-{name}",
            {f"test_tenant_{name}": TENANT},
            {f"tenant-{name}": f"test_tenant_{name}:plugin"},
        )
    return root


def start(kernel: KernelProcess, python: str, **options: Any) -> KernelProcess:
    """Start ``kernel`` with ``python`` (its workers run what the kernel runs)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "executable", python)
        return kernel.start(**options)


@pytest.fixture(scope="module")
def tenants(python: str, shared: Path, tenant_site: Path) -> Iterator[Tenants]:
    data = shared / "data"
    data.mkdir()
    with sqlite3.connect(data / "tenant-a.sqlite") as db:  # tenant-a's file from before it had a user
        db.execute("CREATE TABLE entries (body TEXT NOT NULL)")
        db.execute("INSERT INTO entries VALUES ('from before')")
    db.close()
    config = base_config()
    config["backend"]["workers"].update(
        {
            "restartInitialDelay": 0.05,
            "runtimeGroup": GROUP,
            "plugins": {"tenant-a": {"user": USER_A}, "tenant-b": {"user": USER_B}},
        }
    )
    config["backend"]["database"] = {"client": "sqlite", "connection": {"directory": str(data)}}
    kernel = start(KernelProcess(config, paths=[tenant_site]), python, timeout=60)
    try:
        with httpx.Client(base_url=kernel.url, timeout=20) as client:
            yield Tenants(kernel, client, data, grp.getgrnam(GROUP).gr_gid)
    finally:
        kernel.stop()


def _status(pid: int) -> dict[str, list[int]]:
    """The ids of ``/proc/<pid>/status``: ``Uid`` and ``Gid`` (real, effective, saved, filesystem), ``Groups``."""
    found: dict[str, list[int]] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Uid", "Gid", "Groups"):
            found[key] = [int(v) for v in value.split()]
    return found


def _whoami(c: httpx.Client, plugin: str) -> dict[str, Any]:
    r = c.get(f"/api/{plugin}/whoami")
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


def _peek(c: httpx.Client, plugin: str, path: str | Path) -> dict[str, Any]:
    answer: dict[str, Any] = c.get(f"/api/{plugin}/peek", params={"path": str(path)}).json()
    return answer


# ----------------------------------------------------------------------------- the tests


@needs_root
def test_each_plugins_workers_run_as_its_own_user_and_keep_their_data_to_themselves(tenants: Tenants) -> None:
    c = tenants.client
    for plugin, user in (("tenant-a", USER_A), ("tenant-b", USER_B)):
        entry = pwd.getpwnam(user)
        me = _whoami(c, plugin)
        assert (me["uid"], me["euid"], me["gid"], me["groups"]) == (
            entry.pw_uid,
            entry.pw_uid,
            entry.pw_gid,
            [tenants.runtime_gid],
        )
        assert _status(me["pid"]) == {
            "Uid": [entry.pw_uid] * 4,
            "Gid": [entry.pw_gid] * 4,
            "Groups": [tenants.runtime_gid],  # none of the kernel's (root's) groups
        }
        assert c.post(f"/api/{plugin}/entries", params={"body": f"by {user}"}).status_code == 200
        assert f"by {user}" in c.get(f"/api/{plugin}/entries").json()["entries"]
        directory = tenants.data / plugin
        info = directory.stat()
        assert (info.st_uid, info.st_gid, info.st_mode & 0o7777) == (entry.pw_uid, entry.pw_gid, 0o700)
        db = (directory / f"{plugin}.sqlite").stat()
        assert (db.st_uid, db.st_mode & 0o777) == (entry.pw_uid, 0o600)
    # tenant-a's file from before it had a user of its own was moved into its directory, data and all
    assert "from before" in c.get("/api/tenant-a/entries").json()["entries"]
    assert not (tenants.data / "tenant-a.sqlite").exists()


@needs_root
def test_a_plugin_cannot_read_another_plugins_files_or_process(tenants: Tenants) -> None:
    c = tenants.client
    a, b = _whoami(c, "tenant-a")["pid"], _whoami(c, "tenant-b")["pid"]
    b_file = tenants.data / "tenant-b" / "tenant-b.sqlite"
    c.post("/api/tenant-b/entries", params={"body": "secret of b"})
    # the routes work: each plugin reads its own file and environment, and signals itself
    assert _peek(c, "tenant-b", b_file)["size"] > 0
    assert _peek(c, "tenant-a", f"/proc/{a}/environ")["done"] is True
    assert c.get("/api/tenant-a/signal", params={"pid": a}).json()["done"] is True
    # but not the other plugin's
    for path in (b_file, tenants.data / "tenant-b" / "tenant-b.sqlite-wal", f"/proc/{b}/environ", f"/proc/{b}/mem"):
        answer = _peek(c, "tenant-a", path)
        assert (answer["done"], answer.get("error")) == (False, "PermissionError"), (path, answer)
    answer = c.get("/api/tenant-a/signal", params={"pid": b}).json()
    assert (answer["done"], answer.get("error")) == (False, "PermissionError"), answer


@needs_root
def test_only_the_runtime_group_reaches_the_kernels_sockets(tenants: Tenants, python: str) -> None:
    assert tenants.kernel.proc is not None
    [control] = glob.glob(f"/tmp/kernel-{tenants.kernel.proc.pid}-*/control")
    directory = os.stat(os.path.dirname(control))
    assert (directory.st_uid, directory.st_gid, directory.st_mode & 0o7777) == (0, tenants.runtime_gid, 0o2710)
    probe = f"import socket; socket.socket(socket.AF_UNIX).connect({control!r}); print('connected')"

    def connect(groups: list[int]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [python, "-c", probe], user=OUTSIDER, extra_groups=groups, capture_output=True, text=True, timeout=60
        )

    outside = connect([])
    assert outside.returncode != 0 and "PermissionError" in outside.stderr, outside
    inside = connect([tenants.runtime_gid])  # the same user with the runtime group, as a worker has it
    assert inside.returncode == 0 and "connected" in inside.stdout, inside


@needs_root
def test_a_killed_worker_is_restarted_under_the_same_user(tenants: Tenants) -> None:
    c = tenants.client
    entry = pwd.getpwnam(USER_B)
    assert c.post("/api/tenant-b/entries", params={"body": "before the kill"}).status_code == 200
    first = _whoami(c, "tenant-b")["pid"]
    os.kill(first, signal.SIGKILL)

    def replaced() -> dict[str, Any] | None:
        r = c.get("/api/tenant-b/whoami")
        return r.json() if r.status_code == 200 and r.json()["pid"] != first else None

    me = wait_for(replaced, 30, tenants.kernel.output)
    assert me["uid"] == entry.pw_uid
    assert _status(me["pid"])["Uid"] == [entry.pw_uid] * 4
    assert "before the kill" in c.get("/api/tenant-b/entries").json()["entries"]
    assert _whoami(c, "tenant-a")["uid"] == pwd.getpwnam(USER_A).pw_uid  # the other plugin never noticed


@pytest.mark.parametrize(
    ("workers", "message"),
    [
        (
            {"plugins": {"echo": {"user": "kernel-test-nobody"}}, "runtimeGroup": "root"},
            "backend.workers.plugins.echo.user names OS user 'kernel-test-nobody', which does not exist",
        ),
        (
            {"user": "nobody", "group": "kernel-test-no-group", "runtimeGroup": "root"},
            "backend.workers.group names OS group 'kernel-test-no-group', which does not exist",
        ),
        (
            {"plugins": {"other": {"user": "nobody"}}},
            "backend.workers.plugins.other.user runs workers as another OS user, so backend.workers.runtimeGroup",
        ),
    ],
    ids=["unknown-user", "unknown-group", "no-runtime-group"],
)
def test_an_unusable_user_is_a_clear_error_at_start(site: Path, workers: dict[str, Any], message: str) -> None:
    config = base_config()
    config["backend"]["workers"].update(workers)
    kernel = KernelProcess(config, paths=[site]).start(wait=False)
    assert kernel.proc is not None
    try:
        assert kernel.proc.wait(60) == 2, kernel.output()
    finally:
        kernel.stop()
    assert f"kernel: config error: Invalid config: {message}" in kernel.output()


@needs_root
def test_a_kernel_not_running_as_root_cannot_run_workers_as_another_user(
    python: str, shared: Path, tenant_site: Path
) -> None:
    config = base_config()
    config["backend"]["workers"].update({"runtimeGroup": GROUP, "plugins": {"tenant-a": {"user": USER_A}}})
    path = shared / "not-root.yaml"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o644)
    env = {**os.environ, "PYTHONPATH": str(tenant_site)}
    done = subprocess.run(
        [python, "-m", "kernel.cli", "serve", "--config", str(path)],
        user=OUTSIDER,
        env=env,
        cwd=shared,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done
    assert (
        f"backend.workers.plugins.tenant-a.user is '{USER_A}', but the kernel runs as '{OUTSIDER}', not root"
    ) in done.stderr

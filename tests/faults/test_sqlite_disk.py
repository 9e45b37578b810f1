"""The embedded SQLite engine's disk filling up, or its directory turning read-only, under a running plugin.

The plugin's database directory is a small ``tmpfs`` of its own: filled with a file until the
kernel reports no space, or remounted read-only. Mounting needs root (or CAP_SYS_ADMIN): without
it the tests are skipped. Linux refuses to remount a filesystem read-only while a process has a
file on it open for writing (EBUSY), so a directory "becomes" read-only under a running worker
only through a filesystem error (``errors=remount-ro``); the test reaches the same state by
remounting while the plugin's worker is down (killed), so its replacement finds the directory
read-only, then makes it writable again under that worker.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from kernel.testing import KernelProcess, wait_for
from tests.conftest import assert_error_shape, base_config
from tests.faults.conftest import children, lines_with

WHAT = "The SQLite database of plugin 'ledger'"


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def data_dir() -> Iterator[Path]:
    """A 4 MiB tmpfs for the plugin's database; the tests are skipped where mounting is not permitted."""
    path = Path(tempfile.mkdtemp(prefix="kernel-sqlite-"))
    done = _mount("-t", "tmpfs", "-o", "size=4m", "tmpfs", str(path))
    if done.returncode != 0:
        path.rmdir()
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {done.stderr.strip()}")
    yield path
    if subprocess.run(["umount", str(path)], capture_output=True, check=False).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], check=False)
    path.rmdir()


@pytest.fixture(scope="module")
def kernel(faults_site: Path, data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelProcess]:
    config = base_config(requestTimeout=10)
    config["backend"]["database"] = {  # type: ignore[index]
        "client": "sqlite",
        "connection": {"directory": str(tmp_path_factory.mktemp("data"))},  # every other plugin's
        "plugin": {"ledger": {"connection": {"directory": str(data_dir)}}},  # the tmpfs: ledger's alone
    }
    # a dead worker waits 3 s for its restart: the read-only test remounts in that window
    config["backend"]["workers"]["restartInitialDelay"] = 3.0  # type: ignore[index]
    with KernelProcess(config, paths=[faults_site]) as k:
        yield k


@pytest.fixture
def client(kernel: KernelProcess, data_dir: Path) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=kernel.url + "/api/ledger", timeout=30) as c:
        yield c
    _mount("-o", "remount,rw", str(data_dir))  # a failed test leaves the disk as it found it
    (data_dir / "filler").unlink(missing_ok=True)


def _fill(directory: Path) -> None:
    """Write a file until the filesystem has no space left."""
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
    try:
        while True:  # and the last pages too
            os.write(fd, b"\0" * 512)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
    finally:
        os.close(fd)


def _ok(resp: httpx.Response) -> httpx.Response | None:
    return resp if resp.status_code == 200 else None


def test_a_full_disk_makes_writes_503_reads_go_on_and_writes_come_back(
    kernel: KernelProcess, data_dir: Path, client: httpx.Client
) -> None:
    written = [f"before-{i}" for i in range(5)]
    for body in written:
        assert client.post("/entries", params={"body": body}).status_code == 200
    pid = client.get("/entries").json()["pid"]

    _fill(data_dir)
    for params in ({"body": "x" * 2000}, {"body": "y" * 2000, "tx": "1"}):
        resp = client.post("/entries", params=params)
        body = assert_error_shape(resp, 503, "ServiceUnavailableError")
        assert body["error"]["message"] == f"{WHAT} cannot be written: its disk is full (SQLITE_FULL)", body
    reads = client.get("/entries")  # reads go on
    assert reads.status_code == 200 and sorted(reads.json()["entries"]) == sorted(written)

    (data_dir / "filler").unlink()
    assert client.post("/entries", params={"body": "after"}).status_code == 200  # no restart needed
    after = client.get("/entries").json()
    assert after["pid"] == pid and sorted(after["entries"]) == sorted([*written, "after"])
    assert [p.pid for p in children(kernel, "worker", "ledger")] == [pid]
    assert len(lines_with(kernel, f"{WHAT} cannot be written (")) == 1, kernel.output()
    assert len(lines_with(kernel, f"{WHAT} is back after")) == 1, kernel.output()
    assert "Traceback" not in kernel.output()


def test_a_read_only_directory_makes_writes_503_and_writable_again_serves_them(
    kernel: KernelProcess, data_dir: Path, client: httpx.Client
) -> None:
    assert client.post("/entries", params={"body": "kept"}).status_code == 200
    old = client.get("/entries").json()
    dead = psutil.Process(old["pid"])  # before the kill: the supervisor may reap it before this line runs
    os.kill(old["pid"], signal.SIGKILL)
    psutil.wait_procs([dead], timeout=10)
    remounted = wait_for(lambda: _mount("-o", "remount,ro", str(data_dir)).returncode == 0, 2, "the tmpfs stayed busy")
    assert remounted

    # the replacement starts on the read-only directory and serves reads
    state = wait_for(lambda: _ok(client.get("/entries")), 20, kernel.output).json()
    assert state["pid"] != old["pid"] and sorted(state["entries"]) == sorted(old["entries"])
    for params in ({"body": "refused"}, {"body": "refused-tx", "tx": "1"}):
        body = assert_error_shape(client.post("/entries", params=params), 503, "ServiceUnavailableError")
        message = f"{WHAT} cannot be written: its file or directory is read-only (SQLITE_READONLY)"
        assert body["error"]["message"] == message, body
    assert client.get("/entries").status_code == 200

    assert _mount("-o", "remount,rw", str(data_dir)).returncode == 0
    assert client.post("/entries", params={"body": "writable"}).status_code == 200  # the same worker
    final = client.get("/entries").json()
    assert final["pid"] == state["pid"] and sorted(final["entries"]) == sorted([*old["entries"], "writable"])
    assert "Traceback" not in kernel.output()

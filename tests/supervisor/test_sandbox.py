"""The bubblewrap sandbox (``backend.workers.sandbox``) through ``kernel serve``, from a hostile plugin's side.

Plugin ``prober`` (tests/fixtures/prober.py) runs sandboxed and without network, beside plugin ``echo``
(its victim) running as usual; each of the prober's routes tries one attack and says what it got.
"""

from __future__ import annotations

import errno
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kernel.supervisor.sandbox import unavailable
from kernel.testing import KernelProcess, make_package, wait_for
from tests import plugins
from tests.conftest import base_config

pytestmark = pytest.mark.skipif(unavailable() is not None, reason=f"no sandbox here: {unavailable()}")


def _site(root: Path) -> Path:
    site = root / "site"
    make_package(site, "kernel-test-prober", {"test_prober": plugins.PROBER}, {"prober": "test_prober:plugin"})
    make_package(site, "kernel-test-echo", {"test_echo": plugins.ECHO}, {"echo": "test_echo:plugin"})
    return site


def _config(data: Path) -> dict[str, Any]:
    config = base_config()
    config["backend"]["workers"]["plugins"] = {"prober": {"sandbox": True, "network": False}}
    config["backend"]["database"] = {"client": "better-sqlite3", "connection": {"directory": str(data)}}
    return config


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory, data: Path) -> Iterator[KernelProcess]:
    (data / "echo.sqlite").write_text("the victim's rows")  # a file of another plugin in the shared directory
    k = KernelProcess(_config(data), paths=[_site(tmp_path_factory.mktemp("prober"))])
    k.start(timeout=60)  # a sandboxed worker is spawned, never forked: a fresh interpreter's start
    yield k
    k.stop()


def _probe(k: KernelProcess, route: str, **params: object) -> dict[str, Any]:
    answer = httpx.get(f"{k.url}/api/prober/{route}", params={n: str(v) for n, v in params.items()}, timeout=10)
    assert answer.status_code == 200, answer.text
    got: dict[str, Any] = answer.json()
    return got


def _echo_pid(k: KernelProcess) -> int:
    answer = httpx.get(f"{k.url}/api/echo/pid", timeout=10)
    assert answer.status_code == 200, answer.text
    pid: int = answer.json()["pid"]
    return pid


def test_no_other_process_can_be_seen_or_signalled(kernel: KernelProcess) -> None:
    me = _probe(kernel, "me")["got"]
    assert (me["pid"], me["ppid"]) == (2, 1)  # below the sandbox's init, in a pid namespace of its own
    assert _probe(kernel, "pids")["got"] == [1, 2]  # the sandbox's init and itself
    victim = _echo_pid(kernel)
    assert kernel.proc is not None
    for pid in (victim, kernel.proc.pid):  # another plugin's worker, the supervisor
        assert _probe(kernel, "kill", pid=pid) == {"ok": False, "error": "ProcessLookupError", "errno": errno.ESRCH}
        got = _probe(kernel, "read", path=f"/proc/{pid}/environ")
        assert got["ok"] is False and got["error"] == "FileNotFoundError", got
    assert _echo_pid(kernel) == victim  # the victim serves, the same process


def test_the_config_files_and_the_other_plugins_data_are_out_of_sight(kernel: KernelProcess, data: Path) -> None:
    got = _probe(kernel, "read", path=kernel.config_path)  # the kernel's config file: a device it may not open
    assert got == {"ok": False, "error": "PermissionError", "errno": errno.EACCES}, got
    got = _probe(kernel, "read", path=data / "echo.sqlite")
    assert got["ok"] is False and got["error"] == "FileNotFoundError", got
    # its own directory is its own: writable, and what it writes is on the host
    assert _probe(kernel, "write", path=data / "prober" / "notes")["ok"] is True
    assert (data / "prober" / "notes").read_text() == "prober was here"
    # the rest is read-only, and its /tmp private
    got = _probe(kernel, "write", path="/etc/prober-was-here")
    assert got == {"ok": False, "error": "OSError", "errno": errno.EROFS}, got
    private = Path("/tmp") / f"prober-{uuid.uuid4().hex}"
    assert _probe(kernel, "write", path=private)["ok"] is True
    assert not private.exists()


def test_without_network_only_the_kernels_sockets_reach_it(kernel: KernelProcess) -> None:
    got = _probe(kernel, "connect", port=kernel.port)  # the kernel's own HTTP port, on this host's loopback
    assert got["ok"] is False and got["errno"] in (errno.ENETUNREACH, errno.ECONNREFUSED), got
    assert _echo_pid(kernel) > 0  # a plugin outside the sandbox connects as ever


def test_a_sandboxed_worker_that_dies_is_restarted(kernel: KernelProcess) -> None:
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{kernel.url}/api/prober/exit", params={"code": "3"}, timeout=10).raise_for_status()
    wait_for(lambda: "of plugin 'prober' died (exit code 3)" in kernel.output(), 20, kernel.output)
    wait_for(
        lambda: _probe(kernel, "me")["got"]["pid"] == 2, 30, kernel.output, ignore=(AssertionError, httpx.HTTPError)
    )


def test_the_start_up_line_names_the_sandbox(kernel: KernelProcess) -> None:
    assert re.search(r"sandbox: bubblewrap for 1 of \d+ plugins \(prober\), without network: prober", kernel.output())


def test_a_stopped_kernel_leaves_no_sandbox_behind(tmp_path: Path) -> None:
    k = KernelProcess(_config(tmp_path / "data"), paths=[_site(tmp_path)]).start(timeout=60)
    assert _probe(k, "me")["got"]["pid"] == 2
    assert k.stop() == 0
    left = subprocess.run(["pgrep", "-f", str(k.config_path)], capture_output=True, text=True, check=False)
    assert left.stdout == "", f"processes left: {left.stdout}"


def test_a_sandbox_that_cannot_be_made_stops_the_start_naming_the_key(tmp_path: Path) -> None:
    assert shutil.which("bwrap", path="/nonexistent") is None
    k = KernelProcess(_config(tmp_path / "data"), paths=[_site(tmp_path)], env={"PATH": "/nonexistent"})
    k.start(wait=False)
    assert k.proc is not None
    assert k.proc.wait(30) == 2, k.output()
    assert (
        "backend.workers.plugins.prober.sandbox asks for a sandbox (prober), but bubblewrap is not installed"
        in k.output()
    )
    k.stop()

"""What the dashboard's tests share: a kernel with an operator, and its snapshot read over HTTP."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx

from kernel.testing import KernelProcess, make_package
from tests import plugins
from tests.conftest import TOKEN, base_config

SNAPSHOT = "/.kernel/dashboard/v1/snapshot"
#: the operator's token: ``TOKEN`` of the tests' config, subject ``external:ci-bot``
OPERATOR_TOKEN = TOKEN
OPERATOR = "external:ci-bot"
#: a valid, unrestricted token whose principal is no operator
VIEWER_TOKEN = "viewer-token-not-an-operator"


#: a plugin whose import fails, allowed to (``onPluginBootFailure: continue``): a failed plugin and why
BROKEN = "importer"
BROKEN_REASON = "No module named 'this_module_does_not_exist'"


def dashboard_site(root: Path) -> Path:
    """``root`` with echo (``/pid``, ``/boom``), metered (a manual task ``tick``) and a plugin that fails."""
    make_package(root, "kernel-test-echo", {"test_echo": plugins.ECHO}, {"echo": "test_echo:plugin"})
    make_package(root, "kernel-test-metered", {"test_metered": plugins.METERED}, {"metered": "test_metered:plugin"})
    make_package(
        root, "kernel-test-importer", {"test_importer": plugins.IMPORT_ERROR}, {BROKEN: "test_importer:plugin"}
    )
    return root


def dashboard_config(operators: list[str] | None = None) -> dict[str, Any]:
    """The tests' base config, ``OPERATOR`` as the dashboard's operator, and the viewer's token."""
    config = base_config()
    backend: dict[str, Any] = config["backend"]  # type: ignore[assignment]
    backend["auth"]["externalAccess"].append(
        {"type": "static", "options": {"token": VIEWER_TOKEN, "subject": "viewer"}}
    )
    backend["dashboard"] = {"operators": [OPERATOR] if operators is None else operators}
    backend["startup"] = {"plugins": {BROKEN: {"onPluginBootFailure": "continue"}}}
    return config


def start_kernel(root: Path) -> KernelProcess:
    return KernelProcess(dashboard_config(), paths=[dashboard_site(root)]).start()


def snapshot(kernel: KernelProcess, token: str = OPERATOR_TOKEN) -> dict[str, Any]:
    resp = httpx.get(kernel.url + SNAPSHOT, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def plugin_of(body: dict[str, Any], plugin_id: str) -> dict[str, Any]:
    found: dict[str, Any] = next(p for p in body["plugins"] if p["id"] == plugin_id)
    return found


def echo_pid(kernel: KernelProcess) -> int | None:
    """The pid the echo worker reports itself (``/api/echo/pid``); ``None`` while it is being restarted."""
    resp = httpx.get(kernel.url + "/api/echo/pid", timeout=10)
    return int(resp.json()["pid"]) if resp.status_code == 200 else None


def proc_cmdline(pid: int) -> str:
    """What ``/proc/<pid>/cmdline`` says the process runs ('' when there is no such process)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def proc_rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm", "rb") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

"""``/.kernel/rollout/v1/rollouts`` of a real kernel: operators only, the documented shapes, refusals."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from kernel.testing import KernelProcess, make_package, wait_for
from tests import plugins
from tests.conftest import assert_error_shape
from tests.dashboard.support import OPERATOR_TOKEN, VIEWER_TOKEN, dashboard_config

ROLLOUTS = "/.kernel/rollout/v1/rollouts"
KEYS = {"id", "state", "plugins", "gateways", "requestedAt", "finishedAt", "error", "steps"}


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelProcess]:
    site = tmp_path_factory.mktemp("rollout-routes-site")
    make_package(site, "kernel-test-live", {"test_live": plugins.LIVE}, {"live": "test_live:plugin"})
    make_package(site, "kernel-test-echo", {"test_echo": plugins.ECHO}, {"echo": "test_echo:plugin"})
    config = dashboard_config()
    del config["backend"]["startup"]  # type: ignore[index]
    k = KernelProcess(config, paths=[site]).start()
    yield k
    k.stop()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def post(kernel: KernelProcess, body: Any, token: str | None = OPERATOR_TOKEN) -> httpx.Response:
    headers = auth(token) if token is not None else {}
    return httpx.post(kernel.url + ROLLOUTS, json=body, headers=headers, timeout=30)


def get(kernel: KernelProcess, path: str = ROLLOUTS, token: str | None = OPERATOR_TOKEN) -> httpx.Response:
    return httpx.get(kernel.url + path, headers=auth(token) if token is not None else {}, timeout=30)


def finished(kernel: KernelProcess, location: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        rollout: dict[str, Any] = get(kernel, location).json()["rollout"]
        return rollout if rollout["state"] != "running" else None

    return wait_for(done, 30, "the rollout never finished")


def test_anonymous_callers_get_401_and_non_operators_403(kernel: KernelProcess) -> None:
    assert_error_shape(post(kernel, {"plugins": ["live"]}, token=None), 401, "AuthenticationError")
    assert_error_shape(get(kernel, token=None), 401, "AuthenticationError")
    assert_error_shape(post(kernel, {"plugins": ["live"]}, token="not-a-token"), 401, "AuthenticationError")
    body = assert_error_shape(post(kernel, {"plugins": ["live"]}, token=VIEWER_TOKEN), 403, "NotAllowedError")
    assert "'external:viewer' is not an operator" in body["error"]["message"]  # type: ignore[index]
    assert "backend.dashboard.operators" in body["error"]["message"]  # type: ignore[index]
    assert_error_shape(get(kernel, ROLLOUTS + "/r-000000000000", token=VIEWER_TOKEN), 403, "NotAllowedError")
    assert get(kernel).json()["rollouts"] == []  # nothing was started by the refused calls


def test_an_operator_starts_a_rollout_and_follows_it(kernel: KernelProcess) -> None:
    before = httpx.get(kernel.url + "/api/live/version", timeout=10).json()["pid"]
    resp = post(kernel, {"plugins": ["live"]})
    assert resp.status_code == 202, resp.text
    rollout = resp.json()["rollout"]
    assert set(rollout) == KEYS
    assert rollout["id"].startswith("r-") and rollout["state"] == "running"
    assert rollout["plugins"] == ["live"] and rollout["gateways"] is False
    assert rollout["finishedAt"] is None and rollout["error"] is None
    assert resp.headers["location"] == f"{ROLLOUTS}/{rollout['id']}"
    assert resp.headers["cache-control"] == "no-store"

    done = finished(kernel, resp.headers["location"])
    assert done["state"] == "succeeded" and done["error"] is None
    assert done["finishedAt"] >= done["requestedAt"] == rollout["requestedAt"]
    messages = [s["message"] for s in done["steps"]]
    assert messages[0] == "the config is unchanged"
    assert messages[1].startswith("plugin 'live': starting 1 new worker: live.0.")
    assert messages[-1].startswith("plugin 'live': the old workers are gone")
    assert all(set(s) == {"at", "message"} for s in done["steps"])
    assert httpx.get(kernel.url + "/api/live/version", timeout=10).json()["pid"] != before

    listed = get(kernel).json()["rollouts"]
    assert listed[0] == done  # newest first


def test_every_plugin_rolls_out_one_after_the_other(kernel: KernelProcess) -> None:
    resp = post(kernel, {"allPlugins": True})
    assert resp.status_code == 202, resp.text
    done = finished(kernel, resp.headers["location"])
    assert done["state"] == "succeeded", done["error"]
    assert {"echo", "live"} <= set(done["plugins"])  # and the kernel's own plugins (auth...)
    started = [s["message"].split(":")[0] for s in done["steps"] if "starting 1 new worker" in s["message"]]
    assert started == [f"plugin '{p}'" for p in done["plugins"]]


def test_bad_requests_are_refused_in_the_error_shape(kernel: KernelProcess) -> None:
    assert_error_shape(
        httpx.post(kernel.url + ROLLOUTS, content=b"{", headers=auth(OPERATOR_TOKEN), timeout=10), 400, "InputError"
    )
    for body in ([], {}, {"plugins": ["live"], "gateways": True}, {"plugins": "live"}, {"plugin": ["live"]}):
        assert_error_shape(post(kernel, body), 400, "InputError")
    missing = assert_error_shape(post(kernel, {"plugins": ["live", "nope"]}), 404, "NotFoundError")
    assert "'nope'" in missing["error"]["message"]  # type: ignore[index]
    assert_error_shape(get(kernel, ROLLOUTS + "/r-000000000000"), 404, "NotFoundError")


def test_a_second_rollout_while_one_runs_is_refused_with_409(kernel: KernelProcess) -> None:
    with ThreadPoolExecutor(1) as pool, httpx.Client(base_url=kernel.url, timeout=30) as c:
        slow = pool.submit(c.get, "/api/live/slow", params={"s": "2"})  # the old worker drains for a while
        wait_for(lambda: c.get("/api/live/version").json()["sleeping"] == 1, message="/slow never started")
        first = post(kernel, {"plugins": ["live"]})
        assert first.status_code == 202, first.text
        wait_for(lambda: "drain" in str(get(kernel, first.headers["location"]).json()), 20, "never drained")
        second = assert_error_shape(post(kernel, {"gateways": True}), 409, "ConflictError")
        assert f"rollout {first.json()['rollout']['id']} is still running" in second["error"]["message"]  # type: ignore[index]
        assert slow.result().status_code == 200  # the draining worker finished the request it had
    assert finished(kernel, first.headers["location"])["state"] == "succeeded"
    refused = get(kernel).json()["rollouts"][0]  # the refusal is kept too
    assert refused["state"] == "refused" and refused["gateways"] is True


def test_the_command_says_in_one_line_why_the_kernel_refused(kernel: KernelProcess) -> None:
    def command(*token: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "KERNEL_TOKEN"}
        argv = [sys.executable, "-m", "kernel.cli", "rollout", "live", "--url", kernel.url, *token]
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)

    viewer = command("--token", VIEWER_TOKEN)
    assert viewer.returncode == 1 and viewer.stdout == ""
    assert viewer.stderr.startswith(f"kernel: {kernel.url} answered 403: 'external:viewer' is not an operator")
    anonymous = command()
    assert anonymous.returncode == 1
    assert anonymous.stderr.startswith(f"kernel: {kernel.url} answered 401: no token given (--token or $KERNEL_TOKEN)")
    assert viewer.stderr.count("\n") == anonymous.stderr.count("\n") == 1

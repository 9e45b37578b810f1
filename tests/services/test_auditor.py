"""The ``auditor`` service through a real kernel: events as structured log lines, and to a package's hook.

Plugin ``audited`` audits a delete (succeeded, or failed when the item is locked) and its own start;
package ``audit_sink`` implements ``kernel_audit_event`` and writes every event to a file.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kernel.testing import KernelProcess, make_package, wait_for
from tests import plugins
from tests.conftest import TOKEN, assert_error_shape, base_config

AUTH = {"Authorization": f"Bearer {TOKEN}", "User-Agent": "audit-test/1.0"}


@pytest.fixture(scope="module")
def sink_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("audit") / "events.jsonl"


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory, sink_file: Path) -> Iterator[KernelProcess]:
    root = tmp_path_factory.mktemp("audited")
    make_package(root, "kernel-test-audited", {"test_audited": plugins.AUDITED}, {"audited": "test_audited:plugin"})
    make_package(
        root, "kernel-test-audit-sink", {"test_audit_sink": plugins.AUDIT_SINK}, {"audit-sink": "test_audit_sink"}
    )
    config = base_config()
    config["backend"]["logging"] = {"format": "json"}
    config["backend"]["auditor"] = {"severityLogLevelMappings": {"medium": "warn"}}
    with KernelProcess(config, paths=[root], env={"KERNEL_TEST_AUDIT_FILE": str(sink_file)}) as k:
        yield k


@pytest.fixture(scope="module")
def client(kernel: KernelProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=kernel.url, timeout=20) as c:
        yield c


def _audit_lines(kernel: KernelProcess) -> list[dict[str, Any]]:
    lines = []
    for line in kernel.output().splitlines():
        if '"isAuditEvent"' in line:
            lines.append(json.loads(line[line.index("{") :]))
    return lines


def _shipped(sink_file: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in sink_file.read_text().splitlines()] if sink_file.exists() else []


def _wait_for_events(read: Callable[[], list[dict[str, Any]]], item: str, count: int) -> list[dict[str, Any]]:
    """The events about ``item`` once there are ``count`` of them."""

    def found() -> list[dict[str, Any]] | None:
        events = [e for e in read() if e.get("meta", {}).get("item") == item]
        return events if len(events) >= count else None

    result: list[dict[str, Any]] = wait_for(found, 15)
    return result


def test_a_succeeded_event_is_logged_and_shipped(kernel: KernelProcess, client: httpx.Client, sink_file: Path) -> None:
    assert client.delete("/api/audited/items/a1", headers=AUTH, params={"reason": "cleanup"}).json() == {
        "deleted": "a1"
    }
    expected_request = {"url": "/api/audited/items/a1?reason=cleanup", "method": "DELETE"}
    lines = _wait_for_events(lambda: _audit_lines(kernel), "a1", 2)
    initiated, succeeded = lines
    assert initiated["message"] == "audited.item-delete" and initiated["level"] == "warning"  # medium -> warn
    assert initiated["status"] == "initiated" and succeeded["status"] == "succeeded"
    assert initiated["severityLevel"] == "medium" and initiated["plugin"] == "audited"
    assert initiated["request"] == expected_request
    actor = initiated["actor"]
    assert actor["actorId"] == "external:ci-bot" and actor["userAgent"] == "audit-test/1.0"
    assert actor["ip"] == "127.0.0.1" and actor["hostname"] == "127.0.0.1"
    assert succeeded["meta"] == {"item": "a1", "reason": "cleanup", "deleted": True}
    shipped = _wait_for_events(lambda: _shipped(sink_file), "a1", 2)
    assert [e["status"] for e in shipped] == ["initiated", "succeeded"]
    assert shipped[1] == {
        k: v
        for k, v in succeeded.items()
        if k not in ("ts", "level", "logger", "pid", "message", "isAuditEvent", "request_id")
    }


def test_a_failed_event_carries_the_error(kernel: KernelProcess, client: httpx.Client, sink_file: Path) -> None:
    assert_error_shape(client.delete("/api/audited/items/locked", headers=AUTH), 403, "NotAllowedError")

    def failed() -> list[dict[str, Any]]:
        return [e for e in _shipped(sink_file) if e.get("meta", {}).get("item") == "locked" and e["status"] == "failed"]

    [event] = wait_for(failed, 15)
    assert event["error"] == "NotAllowedError: Item 'locked' is locked"
    assert any(e.get("error") == event["error"] for e in _audit_lines(kernel))


def test_an_event_outside_a_request_is_the_plugins_own(kernel: KernelProcess, sink_file: Path) -> None:
    def started() -> list[dict[str, Any]]:
        return [e for e in _shipped(sink_file) if e["eventId"] == "plugin-start"]

    events = wait_for(lambda: len(started()) >= 2 and started(), 15)
    assert events[0]["actor"] == {"actorId": "plugin:audited"} and "request" not in events[0]
    assert events[0]["severityLevel"] == "high" and events[1]["meta"] == {"version": 1}


def test_a_failing_sink_is_logged_and_the_request_goes_on(kernel: KernelProcess, client: httpx.Client) -> None:
    answer = client.delete("/api/audited/items/b2", headers=AUTH, params={"sinkFails": "yes"})
    assert answer.json() == {"deleted": "b2"}
    wait_for(lambda: "the audit sink is down" in kernel.output(), 15)
    # still logged, by the kernel itself
    assert [e["status"] for e in _audit_lines(kernel) if e.get("meta", {}).get("item") == "b2"] == [
        "initiated",
        "succeeded",
    ]

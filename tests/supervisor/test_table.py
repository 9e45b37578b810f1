"""The worker table: a plugin's state follows its ready workers; failed plugins stay failed."""

from __future__ import annotations

from typing import Any

from kernel.registry import PluginEntry
from kernel.supervisor.children import Child
from kernel.supervisor.restarts import RestartPolicy
from kernel.supervisor.table import PluginRecord, build_table


class _Process:
    pid = 0

    def exit_code(self) -> int | None:
        return None

    def terminate(self) -> None: ...
    def kill(self) -> None: ...
    def wait(self) -> int:
        return 0


def _record(replicas: int) -> PluginRecord:
    entry = PluginEntry("x", "x = m:plugin", "pkg-x", "1.2", "m")  # data only: the supervisor holds no plugin
    return PluginRecord(entry, replicas, "abort", RestartPolicy(5, 60, 0.1, 1))


def _worker(ident: str, **state: Any) -> Child:
    return Child(ident, "worker", _Process(), plugin_id="x", **state)


def test_states_follow_the_ready_workers() -> None:
    plugin = _record(replicas=2)
    starting = build_table(1, [plugin], [_worker("x.0.1"), _worker("x.1.2")], {}, True).plugins[0]
    assert (starting.state, starting.workers) == ("starting", [])
    degraded = build_table(2, [plugin], [_worker("x.0.1", ready=True), _worker("x.1.2")], {}, True).plugins[0]
    assert (degraded.state, degraded.workers) == ("degraded", ["x.0.1"])
    assert degraded.worker_states == {"x.0.1": "ready", "x.1.2": "starting"}
    both = [_worker("x.0.1", ready=True), _worker("x.1.2", ready=True)]
    ready = build_table(3, [plugin], both, {}, True).plugins[0]
    assert (ready.state, ready.workers, ready.version) == ("ready", ["x.0.1", "x.1.2"], "1.2")


def test_an_unready_worker_gets_no_traffic_and_says_why() -> None:
    plugin = _record(replicas=1)
    table = build_table(1, [plugin], [_worker("x.0.1", ready=True, unready="db down")], {}, True)
    state = table.plugins[0]
    assert (state.state, state.workers, state.reason) == ("starting", [], "db down")
    assert state.worker_states == {"x.0.1": "unready: db down"}


def test_failed_plugins_keep_their_state_and_reason() -> None:
    plugin = _record(replicas=1)
    plugin.state, plugin.reason = "failed", "too many deaths"
    table = build_table(4, [plugin], [_worker("x.0.1", ready=True)], {"broken": "import failed"}, False)
    assert [(p.id, p.state, p.reason) for p in table.plugins] == [
        ("x", "failed", "too many deaths"),
        ("broken", "failed", "import failed"),
    ]
    assert table.accepting is False and table.generation == 4

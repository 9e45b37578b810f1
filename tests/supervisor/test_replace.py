"""Replacing workers without a gap, against a fake supervisor (``ReplaceHost``): each step waits for the
news the supervisor sends (``Changes``), never for a clock. The real-process path is in
``test_dev_reload.py`` and ``test_limits.py``."""

from __future__ import annotations

import asyncio
import logging

import pytest

from kernel.protocol import Message, Shutdown
from kernel.registry import PluginEntry
from kernel.supervisor.children import Child
from kernel.supervisor.host import Changes
from kernel.supervisor.replace import Replacer, Report
from kernel.supervisor.restarts import RestartPolicy
from kernel.supervisor.table import PluginRecord


class _Process:
    pid = 0

    def __init__(self) -> None:
        self.signals: list[str] = []

    def exit_code(self) -> int | None:
        return None

    def terminate(self) -> None:
        self.signals.append("TERM")

    def kill(self) -> None:
        self.signals.append("KILL")

    def wait(self) -> int:
        return 0


class _Host:
    """A supervisor with one plugin, ``p``, of one worker, and one gateway."""

    def __init__(self) -> None:
        self.changes = Changes()
        self.stopping = False
        entry = PluginEntry("p", "p = m:plugin", "pkg-p", "1.0", "m")
        self.plugins = {"p": PluginRecord(entry, 1, "continue", RestartPolicy(5, 60, 0.1, 1))}
        self.children: dict[str, Child] = {}
        self.generation = 0
        self.sent: list[tuple[str, Message]] = []
        self.recycles = 0
        self.started: list[Child] = []
        self.gateway = self.add(Child("gateway-0", "gateway", _Process(), ready=True))
        self.old = self.add(Child("p.0.1", "worker", _Process(), plugin_id="p", ready=True))

    def add(self, child: Child) -> Child:
        self.children[child.ident] = child
        return child

    def start_worker(self, plugin: PluginRecord, slot: int, *, replacing: bool = False) -> Child:
        child = self.add(
            Child(f"p.{slot}.{len(self.started) + 2}", "worker", _Process(), plugin_id=plugin.id, replacing=replacing)
        )
        self.started.append(child)
        return child

    def publish(self) -> int:
        self.generation += 1
        return self.generation

    def send(self, child: Child, msg: Message) -> bool:
        self.sent.append((child.ident, msg))
        return True

    def recycled(self, plugin_id: str) -> None:
        self.recycles += 1

    def exited(self, child: Child) -> None:
        del self.children[child.ident]
        self.changes.notify()


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_replacement_moves_on_at_each_change_and_only_then() -> None:
    host = _Host()
    replacer = Replacer(host, host.changes, grace=0.5, kill_timeout=5.0)
    replacer.request("p", "max requests", only=host.old)
    await _settle()
    [new] = host.started
    assert new.replacing and not host.old.retiring

    new.ready = True  # not yet told: the replacement does not look by itself
    await _settle()
    assert host.generation == 0
    host.changes.notify()
    await _settle()
    assert (new.replacing, host.old.retiring, host.generation, host.recycles) == (False, True, 1, 1)
    assert host.sent == []  # the old one drains only once every gateway routes by the new table

    host.gateway.applied = 1
    host.changes.notify()
    await _settle()
    assert host.sent == [("p.0.1", Shutdown(0.5))]

    host.exited(host.old)  # it drained and exited: the replacement is over
    await _settle()
    assert replacer._running == {}
    assert host.old.process.signals == []  # type: ignore[attr-defined]


async def test_a_replacement_that_dies_before_ready_leaves_the_old_worker_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    host = _Host()
    replacer = Replacer(host, host.changes, grace=0.5, kill_timeout=5.0)
    host.old.recycling = True
    replacer.request("p", "over its soft memory limit", only=host.old)
    await _settle()
    [new] = host.started
    with caplog.at_level(logging.ERROR, "kernel"):
        host.exited(new)
        await _settle()
    assert "the new workers did not start" in caplog.text
    assert (host.old.retiring, host.old.recycling, host.generation) == (False, False, 0)
    assert replacer._running == {}


async def test_an_old_worker_that_does_not_drain_in_time_is_killed() -> None:
    host = _Host()
    replacer = Replacer(host, host.changes, grace=0.05, kill_timeout=0.05)
    replacer.request("p", "source changed")
    await _settle()
    [new] = host.started
    new.ready = True
    host.gateway.applied = 1  # already routes by the next table
    host.changes.notify()
    await asyncio.wait_for(asyncio.gather(*replacer._running.values()), 2.0)
    assert host.old.process.signals == ["KILL"]  # type: ignore[attr-defined]


class _Follower:
    """A ``Report`` that keeps what it is told."""

    def __init__(self) -> None:
        self.steps: list[str] = []
        self.outcomes: list[str] = []
        self.report = Report(self.steps.append, self.outcomes.append)


async def test_a_report_hears_each_step_then_the_outcome_once_the_old_workers_are_gone() -> None:
    host = _Host()
    replacer = Replacer(host, host.changes, grace=0.5, kill_timeout=5.0)
    follower = _Follower()
    replacer.request("p", "rollout r-1", report=follower.report)
    await _settle()
    [new] = host.started
    assert follower.steps == ["plugin 'p': starting 1 new worker: p.0.2 (pid 0)"]
    new.ready = True
    host.gateway.applied = 1
    host.changes.notify()
    await _settle()
    assert follower.steps[1:] == [
        "plugin 'p': new workers ready (pid 0); the gateways route to them",
        "plugin 'p': the old workers drain: p.0.1 (pid 0)",
    ]
    assert follower.outcomes == []  # not before the old worker is gone
    host.exited(host.old)
    await _settle()
    assert follower.steps[-1].startswith("plugin 'p': the old workers are gone (")
    assert follower.outcomes == [""]


async def test_a_report_hears_why_the_new_workers_did_not_start() -> None:
    host = _Host()
    replacer = Replacer(host, host.changes, grace=0.5, kill_timeout=5.0)
    follower = _Follower()
    replacer.request("p", "rollout r-1", report=follower.report)
    await _settle()
    [new] = host.started
    new.exit_code = 3
    host.exited(new)
    await _settle()
    assert follower.outcomes == [
        "plugin 'p': the new workers did not start (worker p.0.2 exited with code 3 before it was ready); "
        "the running workers keep serving"
    ]
    assert not host.old.retiring


async def test_a_request_during_a_replacement_is_reported_by_the_next_one() -> None:
    host = _Host()
    replacer = Replacer(host, host.changes, grace=0.5, kill_timeout=5.0)
    first, second = _Follower(), _Follower()
    replacer.request("p", "source changed", report=first.report)
    await _settle()
    replacer.request("p", "rollout r-2", report=second.report)  # queued behind the first
    [new] = host.started
    new.ready = True
    host.gateway.applied = 1
    host.changes.notify()
    await _settle()
    host.exited(host.old)
    await _settle()
    assert first.outcomes == [""] and second.outcomes == []
    newer = host.started[-1]
    assert newer is not new and second.steps == [f"plugin 'p': starting 1 new worker: {newer.ident} (pid 0)"]


async def test_changes_wake_every_waiter_and_time_out() -> None:
    changes = Changes()
    flag = {"on": False}
    waiters = [asyncio.ensure_future(changes.wait_for(lambda: flag["on"])) for _ in range(3)]
    await _settle()
    changes.notify()  # a change that does not meet the condition: they wait on
    await _settle()
    assert not any(w.done() for w in waiters)
    flag["on"] = True
    changes.notify()
    assert await asyncio.wait_for(asyncio.gather(*waiters), 1.0) == [True, True, True]
    assert await changes.wait_for(lambda: False, timeout=0.01) is False
    assert await changes.wait_for(lambda: True, timeout=0) is True

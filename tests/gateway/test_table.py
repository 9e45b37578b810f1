"""The routing table of a gateway, without a process: tables applied, workers picked, requests waiting."""

from __future__ import annotations

import asyncio

from kernel.gateway.relay import WorkerLink
from kernel.gateway.table import RoutingTable
from kernel.protocol import PluginState, PluginStateName, WorkerTable


def plugin(
    pid: str,
    *workers: str,
    state: PluginStateName = "ready",
    draining: tuple[str, ...] = (),
    routes: dict[str, str] | None = None,
    reason: str = "",
) -> PluginState:
    return PluginState(pid, state, [], list(workers), reason=reason, draining=list(draining), routes=routes or {})


def table(generation: int, *plugins: PluginState, accepting: bool = True) -> WorkerTable:
    return WorkerTable(generation, list(plugins), accepting)


def worker_ids(rt: RoutingTable, plugin_id: str) -> list[str]:
    return [w.id for w in rt.plugins[plugin_id].workers]


async def settle() -> None:
    """Let every task woken so far run (a few loop turns)."""
    for _ in range(5):
        await asyncio.sleep(0)


# -- applying tables ------------------------------------------------------------------------------


def test_a_first_table_makes_a_route_per_plugin_with_a_link_per_ready_worker() -> None:
    rt = RoutingTable()
    gone = rt.apply(
        table(1, plugin("echo", "echo.0.1", "echo.1.2", routes={"echo.0.1": "echo.0.1:s3cret"}), plugin("other"))
    )
    assert gone == set()
    assert set(rt.plugins) == {"echo", "other"} and rt.generation == 1 and rt.seen and rt.accepting
    first, second = rt.plugins["echo"].workers
    assert (first.id, first.plugin_id, first.ident, first.inflight) == ("echo.0.1", "echo", b"echo.0.1:s3cret", 0)
    assert second.ident == b"echo.1.2"  # no secret route: the worker id is its routing id
    assert rt.plugins["other"].workers == [] and rt.plugins["other"].pick() is None


def test_a_worker_kept_across_tables_keeps_its_link_and_its_in_flight_count() -> None:
    rt = RoutingTable()
    rt.apply(table(1, plugin("echo", "w1", "w2")))
    kept, dropped = rt.plugins["echo"].workers
    kept.inflight, dropped.inflight = 3, 1
    gone = rt.apply(table(2, plugin("echo", "w1", "w3")))
    assert gone == {"w2"}
    again, new = rt.plugins["echo"].workers
    assert again is kept and again.inflight == 3
    assert new.id == "w3" and new.inflight == 0


def test_a_worker_id_with_a_new_routing_id_is_another_link() -> None:
    rt = RoutingTable()
    rt.apply(table(1, plugin("echo", "w1", routes={"w1": "w1:old"})))
    old = rt.plugins["echo"].workers[0]
    old.inflight = 2
    rt.apply(table(2, plugin("echo", "w1", routes={"w1": "w1:new"})))
    new = rt.plugins["echo"].workers[0]
    assert new is not old and new.ident == b"w1:new" and new.inflight == 0


def test_a_resend_of_the_table_in_force_is_ignored() -> None:
    rt = RoutingTable()
    rt.apply(table(4, plugin("echo", "w1")))
    link = rt.plugins["echo"].workers[0]
    assert rt.apply(table(4, plugin("echo", "w2"), accepting=False)) == set()  # same generation: not looked at
    assert worker_ids(rt, "echo") == ["w1"] and rt.plugins["echo"].workers[0] is link and rt.accepting
    assert rt.apply(table(5, plugin("echo", "w2"))) == {"w1"}  # the next generation is applied
    assert worker_ids(rt, "echo") == ["w2"]


def test_a_first_table_is_applied_whatever_its_generation() -> None:
    rt = RoutingTable()
    assert rt.generation == -1
    rt.apply(table(-1, plugin("echo", "w1")))
    assert worker_ids(rt, "echo") == ["w1"] and rt.seen


def test_a_draining_worker_keeps_its_link_for_its_streams_but_is_not_picked() -> None:
    rt = RoutingTable()
    rt.apply(table(1, plugin("echo", "old")))
    old = rt.plugins["echo"].workers[0]
    old.inflight = 2
    assert rt.apply(table(2, plugin("echo", "new", draining=("old",)))) == set()  # its streams run to their end
    route = rt.plugins["echo"]
    assert worker_ids(rt, "echo") == ["new"]
    route.workers[0].inflight = 50  # busier than the draining one: still the only one picked
    assert route.pick() is route.workers[0]
    rt.apply(table(3, plugin("echo", "new", draining=("old",))))
    assert rt.apply(table(4, plugin("echo", "new"))) == {"old"}  # the draining worker is gone at last
    assert old.inflight == 2  # the link the streams hold is untouched: they close it themselves


def test_a_plugin_whose_workers_all_drain_has_none_to_pick() -> None:
    rt = RoutingTable()
    rt.apply(table(1, plugin("echo", "w1")))
    rt.apply(table(2, plugin("echo", draining=("w1",))))
    assert rt.plugins["echo"].pick() is None


# -- picking --------------------------------------------------------------------------------------


def test_pick_takes_the_least_loaded_worker_and_the_first_of_equals() -> None:
    rt = RoutingTable()
    rt.apply(table(1, plugin("echo", "a", "b", "c")))
    route = rt.plugins["echo"]
    a, b, c = route.workers
    assert route.pick() is a
    a.inflight, b.inflight, c.inflight = 2, 1, 1
    assert route.pick() is b
    b.inflight = 3
    assert route.pick() is c
    c.inflight = 5
    assert route.pick() is a


def test_a_dropped_worker_is_not_picked_until_the_next_table() -> None:
    rt = RoutingTable()
    rt.apply(table(1, plugin("echo", "a", "b")))
    route = rt.plugins["echo"]
    a, b = route.workers
    b.inflight = 9
    route.drop(a)
    assert route.pick() is b
    route.drop(a)  # twice, or a worker it never had: no error
    route.drop(WorkerLink("stranger", "echo"))
    route.drop(b)
    assert route.pick() is None
    rt.apply(table(2, plugin("echo", "a", "b")))
    assert rt.plugins["echo"].pick() is a


# -- waiting for a table ------------------------------------------------------------------------


async def test_a_new_table_wakes_the_requests_waiting_for_one() -> None:
    rt = RoutingTable()
    waiters = [asyncio.create_task(rt.table_change(30)) for _ in range(2)]
    await settle()
    assert not any(w.done() for w in waiters)
    rt.apply(table(1, plugin("echo", "w1")))
    await settle()
    assert all(w.done() for w in waiters)


async def test_a_resend_of_the_table_wakes_nobody() -> None:
    rt = RoutingTable()
    rt.apply(table(1, plugin("echo")))
    waiter = asyncio.create_task(rt.table_change(30))
    await settle()
    rt.apply(table(1, plugin("echo")))
    await settle()
    assert not waiter.done()
    rt.apply(table(2, plugin("echo", "w1")))
    await settle()
    assert waiter.done()


async def test_waiting_for_a_table_ends_at_the_timeout() -> None:
    rt = RoutingTable()
    await rt.table_change(0.01)  # returns: the caller looks at the table again and decides
    assert not rt.seen


# -- waiting for room ----------------------------------------------------------------------------


async def test_a_released_stream_wakes_exactly_the_oldest_waiting_request() -> None:
    rt = RoutingTable()
    rt.apply(table(1, plugin("echo", "w1"), plugin("other", "w2")))
    waiters = []
    for _ in range(3):
        waiters.append(asyncio.create_task(rt.room("echo", 30)))
        await settle()  # each joins the queue before the next
    assert len(rt.queue("echo")) == 3
    rt.released("other")  # another plugin's room: nobody here moves
    await settle()
    assert [w.done() for w in waiters] == [False, False, False]
    rt.released("echo")
    await settle()
    assert [w.done() for w in waiters] == [True, False, False]
    assert len(rt.queue("echo")) == 2
    rt.released("echo")
    await settle()
    assert [w.done() for w in waiters] == [True, True, False]
    rt.released("echo")
    await settle()
    assert all(w.done() for w in waiters) and rt.queue("echo") == []
    rt.released("echo")  # nobody waiting: nothing happens
    rt.released("nobody")


async def test_a_new_table_wakes_every_request_waiting_for_room() -> None:
    rt = RoutingTable()
    rt.apply(table(1, plugin("echo", "w1"), plugin("other", "w2")))
    waiters = [asyncio.create_task(rt.room(pid, 30)) for pid in ("echo", "echo", "other")]
    await settle()
    rt.apply(table(2, plugin("echo", "w1", "w3"), plugin("other", "w2")))  # new workers may have room
    await settle()
    assert all(w.done() for w in waiters)
    assert rt.queue("echo") == [] and rt.queue("other") == []


async def test_waiting_for_room_ends_at_the_timeout_and_leaves_the_queue() -> None:
    rt = RoutingTable()
    rt.apply(table(1, plugin("echo", "w1")))
    await rt.room("echo", 0.01)
    assert rt.queue("echo") == []


async def test_a_request_that_stops_waiting_leaves_the_queue_and_the_next_one_gets_the_room() -> None:
    rt = RoutingTable()
    rt.apply(table(1, plugin("echo", "w1")))
    first = asyncio.create_task(rt.room("echo", 30))
    await settle()
    second = asyncio.create_task(rt.room("echo", 30))
    await settle()
    first.cancel()  # its client left
    await settle()
    assert first.cancelled() and len(rt.queue("echo")) == 1
    rt.released("echo")
    await settle()
    assert second.done()


async def test_a_stream_ending_just_as_the_oldest_waiter_is_cancelled_wakes_the_next() -> None:
    """The oldest waiter's client left in the same loop turn as a stream ended: the room goes to the next one."""
    rt = RoutingTable()
    rt.apply(table(1, plugin("echo", "w1")))
    first = asyncio.create_task(rt.room("echo", 30))
    await settle()
    second = asyncio.create_task(rt.room("echo", 30))
    await settle()
    first.cancel()  # cancelled, but its task has not run yet to leave the queue
    rt.released("echo")
    await settle()
    assert first.cancelled()
    assert second.done(), "the released room went to a request that had already left; the next one still waits"


# -- readiness ------------------------------------------------------------------------------------


def test_readiness_before_any_table_is_starting() -> None:
    assert RoutingTable().readiness() == (False, {"status": "starting"})


def test_readiness_of_a_gateway_not_accepting_is_stopping() -> None:
    rt = RoutingTable()
    rt.apply(table(1, plugin("echo", "w1"), accepting=False))
    assert rt.readiness() == (False, {"status": "stopping"})
    rt.apply(table(2, plugin("echo", "w1")))
    assert rt.readiness() == (True, {"status": "ok"})
    rt.stop_accepting()
    assert rt.readiness() == (False, {"status": "stopping"})


def test_readiness_of_a_leaving_instance_is_stopping_while_it_still_accepts() -> None:
    rt = RoutingTable()
    rt.apply(WorkerTable(1, [plugin("echo", "w1")], True, leaving=True))  # SIGTERM, within serverShutdownDelay
    assert rt.readiness() == (False, {"status": "stopping"})
    assert rt.accepting and worker_ids(rt, "echo") == ["w1"]  # requests are still routed


def test_readiness_names_the_plugins_without_a_ready_worker() -> None:
    rt = RoutingTable()
    rt.apply(
        table(
            1,
            plugin("echo", "w1"),
            plugin("slow", state="starting"),
            plugin("broken", state="failed", reason="boot failed: ImportError"),
            plugin("empty", reason="worker exited"),
        )
    )
    ready, body = rt.readiness()
    assert not ready
    assert body == {
        "status": "unavailable",
        "plugins": {"slow": "starting", "broken": "boot failed: ImportError", "empty": "worker exited"},
    }


def test_a_failed_plugin_allowed_to_fail_is_listed_as_failed_and_the_instance_is_ready() -> None:
    rt = RoutingTable(tolerated=lambda plugin_id: plugin_id == "optional")
    rt.apply(
        table(
            1,
            plugin("echo", "w1"),
            plugin("optional", state="failed", reason="boot failed"),
            plugin("vital", state="failed"),
        )
    )
    assert rt.readiness() == (
        False,
        {"status": "unavailable", "plugins": {"vital": "failed"}, "failed": {"optional": "boot failed"}},
    )
    rt.apply(table(2, plugin("echo", "w1"), plugin("optional", state="failed", reason="boot failed")))
    assert rt.readiness() == (True, {"status": "ok", "failed": {"optional": "boot failed"}})


def test_a_failed_plugin_with_a_worker_left_is_not_ready_unless_allowed_to_fail() -> None:
    rt = RoutingTable()
    rt.apply(table(1, plugin("flappy", "w1", state="failed", reason="restarting too often")))
    assert rt.readiness() == (False, {"status": "unavailable", "plugins": {"flappy": "restarting too often"}})

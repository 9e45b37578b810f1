"""kernel_services.scheduler: claim logic on SQLite and PostgreSQL, task runs in-process, two kernels sharing PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from kernel.errors import ConflictError, NotFoundError
from kernel.testing import KernelProcess, RecordingLogger, make_package, wait_for, wait_for_async
from kernel_services.database import PluginDatabase, create_database
from kernel_services.scheduler import Cadence, TaskScheduler, open_task_store
from tests import plugins
from tests.conftest import assert_error_shape
from tests.services.conftest import AUTH, config_of, database_config, kernel_config, pg_fetch, worker_pids

pytestmark = pytest.mark.usefixtures("engines_cleanup")


Instances = Callable[[], PluginDatabase]
#: poll interval of the schedulers made by the ``schedulers`` fixture
POLL = 0.05


@pytest.fixture(params=["sqlite", "pg-schema"])
async def instance_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Instances]:
    """Opens the same plugin database again for each call, as separate kernel instances would."""
    config = config_of(database=database_config(request.param, tmp_path))
    opened: list[PluginDatabase] = []

    def open_() -> PluginDatabase:
        opened.append(create_database(config, "sched"))
        return opened[-1]

    yield open_
    for db in opened:
        await db.close()


@pytest.fixture
async def schedulers(instance_db: Instances) -> AsyncIterator[Callable[[], TaskScheduler]]:
    made: list[TaskScheduler] = []

    def make() -> TaskScheduler:
        made.append(TaskScheduler("sched", instance_db(), RecordingLogger(), poll_interval=POLL))
        return made[-1]

    yield make
    for s in made:
        await s.stop()


class Recorder:
    """A task body that records (start, end) of each run and how many ran at once."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.runs: list[list[float | None]] = []
        self.active = 0
        self.max_active = 0
        self.cancelled = 0
        self.release = asyncio.Event()

    async def __call__(self) -> None:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        run: list[float | None] = [time.monotonic(), None]
        self.runs.append(run)
        try:
            if self.seconds:
                await asyncio.sleep(self.seconds)
            else:
                await self.release.wait()
            run[1] = time.monotonic()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.active -= 1


def no_overlap(runs: list[list[float | None]]) -> bool:
    """Each run ended before the next one started."""
    ordered = sorted(runs, key=lambda r: r[0] or 0.0)
    return all(a[1] is not None and b[0] is not None and a[1] <= b[0] for a, b in itertools.pairwise(ordered))


async def poll_rounds(*schedulers: TaskScheduler, rounds: int = 3) -> None:
    """Wait until each scheduler has gone round ``rounds`` times (a local probe task every poll interval).

    For "nothing runs" checks: by then, anything due would have run, however slow the machine.
    """
    counts = [0] * len(schedulers)
    for i, s in enumerate(schedulers):

        async def probe(i: int = i) -> None:
            counts[i] += 1

        await s.schedule_task(f"probe-{i}", probe, frequency=POLL, timeout=5, scope="local")
    await wait_for_async(lambda: min(counts) >= rounds, 10, "the schedulers did not go round")


# ----------------------------------------------------------------------------- claims


async def test_claim_is_exclusive_and_needs_the_ticket(instance_db: Instances) -> None:
    a, b = await open_task_store(instance_db()), await open_task_store(instance_db())
    now = await a.now()
    assert abs(now - time.time()) < 5
    await a.upsert("t", {"frequency": 1}, now - 1)
    won = await asyncio.gather(a.claim("t", "ticket-a", 5), b.claim("t", "ticket-b", 5))
    assert sorted(won) == [False, True]
    winner, ticket = (a, "ticket-a") if won[0] else (b, "ticket-b")
    assert not await a.trigger("t")  # running somewhere: 409
    assert not await a.release("t", "not-the-ticket", now + 60, None)
    assert await winner.release("t", ticket, now + 60, None)
    assert not await b.claim("t", "ticket-c", 5)  # not due yet
    await b.upsert("t", {"frequency": 1}, now + 3600)  # a later due time does not postpone the earlier one
    assert (await b.row("t") or {})["next_run_at"] == pytest.approx(now + 60)
    assert await b.trigger("t")
    assert await b.claim("t", "ticket-d", 5)
    assert await a.free_expired() == 0
    await a.db.execute("UPDATE kernel_tasks SET current_run_expires_at = $1", now - 1)  # its holder died
    assert await a.free_expired() == 1
    row = await a.row("t") or {}
    assert row["current_run_ticket"] is None and row["last_run_error"] == "claim expired"
    assert await a.claim("t", "ticket-e", 5)


async def test_global_task_runs_once_per_period_across_instances(schedulers: Callable[[], TaskScheduler]) -> None:
    body = Recorder(0.05)
    first, second = schedulers(), schedulers()
    started = time.monotonic()
    for s in (first, second):
        await s.schedule_task("tick", body, frequency=0.2, timeout=2)
    await wait_for_async(lambda: len(body.runs) >= 5, 15, "the task did not run 5 times")
    await first.stop()
    await second.stop()
    periods = (time.monotonic() - started) / 0.2
    # at most one run per period, across both instances: a slow machine only makes fewer
    assert len(body.runs) <= periods + 1, (periods, body.runs)
    assert body.max_active == 1 and no_overlap(body.runs)


async def test_stop_cancels_the_run_and_releases_the_claim(schedulers: Callable[[], TaskScheduler]) -> None:
    body = Recorder()
    s = schedulers()
    await s.schedule_task("held", body, frequency=60, timeout=30)
    await wait_for_async(lambda: body.active == 1)
    assert (await s.list_tasks())[0]["taskState"]["status"] == "running"
    await s.stop()
    assert body.cancelled == 1
    other = schedulers()
    await other.schedule_task("held", Recorder(), frequency=60, timeout=30)
    state = (await other.list_tasks())[0]["taskState"]
    assert state["status"] == "idle" and state["lastRunError"] == "cancelled"
    with pytest.raises(RuntimeError, match="shutting down"):
        await s.schedule_task("late", body, frequency=1, timeout=1)


# ----------------------------------------------------------------------------- runs


@pytest.mark.parametrize("scope", ["local", "global"])
async def test_timeout_cancels_the_run_and_the_next_one_happens(
    schedulers: Callable[[], TaskScheduler], scope: Any
) -> None:
    body = Recorder(5.0)
    s = schedulers()
    await s.schedule_task("slow", body, frequency=0.3, timeout=0.1, scope=scope)
    await wait_for_async(lambda: body.cancelled >= 2)
    assert all(end is None for _, end in body.runs)
    await wait_for_async(lambda: body.active == 0)
    state = (await s.list_tasks())[0]["taskState"]
    assert state["lastRunError"] == "timed out after 0.1s"


@pytest.mark.parametrize("scope", ["local", "global"])
async def test_trigger_runs_now_409_while_running_404_unknown(
    schedulers: Callable[[], TaskScheduler], scope: Any
) -> None:
    body = Recorder()
    s, peer = schedulers(), schedulers()
    await s.schedule_task("manual", body, frequency="manual", timeout=10, scope=scope)
    await peer.schedule_task("manual", body, frequency="manual", timeout=10, scope=scope)  # same plugin code
    await poll_rounds(s, peer)
    assert body.runs == []  # manual tasks only run when triggered
    await s.trigger_task("manual")
    await wait_for_async(lambda: body.active == 1)
    with pytest.raises(ConflictError, match="already running"):
        await s.trigger_task("manual")
    if scope == "global":  # the row is claimed: every instance sees it running
        with pytest.raises(ConflictError):
            await peer.trigger_task("manual")
    with pytest.raises(NotFoundError, match="no task 'nope'"):
        await s.trigger_task("nope")
    body.release.set()
    await wait_for_async(lambda: body.active == 0 and len(body.runs) == 1 and body.runs[0][1] is not None)
    await wait_for_async(lambda: _idle(s, "manual"))
    await s.trigger_task("manual")
    await wait_for_async(lambda: len(body.runs) == 2)


async def _idle(s: TaskScheduler, task_id: str) -> bool:
    tasks = {t["taskId"]: t for t in await s.list_tasks()}
    return bool(tasks[task_id]["taskState"]["status"] == "idle")


async def test_local_task_never_overlaps_itself(schedulers: Callable[[], TaskScheduler]) -> None:
    body = Recorder(0.15)
    s = schedulers()
    await s.schedule_task("busy", body, frequency=0.05, timeout=1, scope="local")
    await wait_for_async(lambda: len(body.runs) >= 3, 10, "the task did not run 3 times")
    await s.stop()
    assert len(body.runs) >= 3 and body.max_active == 1
    assert no_overlap([r for r in body.runs if r[1] is not None])


async def test_initial_delay_and_listing(schedulers: Callable[[], TaskScheduler]) -> None:
    body = Recorder(0.01)
    s = schedulers()
    scheduled = time.monotonic()
    await s.schedule_task("later", body, frequency=timedelta(seconds=30), timeout=5, initial_delay=0.3)
    await s.schedule_task("cron", body, frequency="0 0 1 1 *", timeout=5, scope="local")
    assert body.runs == []
    await wait_for_async(lambda: len(body.runs) == 1)
    first_start = body.runs[0][0]
    assert first_start is not None and first_start - scheduled >= 0.3 - 0.01, "ran before its initial delay"
    listed = {t["taskId"]: t for t in await s.list_tasks()}
    assert listed["later"]["scope"] == "global" and listed["cron"]["scope"] == "local"
    assert listed["later"]["settings"] == {"frequency": 30.0, "timeout": 5.0, "initialDelay": 0.3}
    assert listed["cron"]["settings"]["frequency"] == "0 0 1 1 *"
    assert listed["cron"]["taskState"]["nextRunAt"].endswith("-01-01T00:00:00+00:00")
    assert set(listed["later"]["taskState"]) >= {"status", "nextRunAt", "lastRunEndedAt", "lastRunError"}


async def test_schedule_errors(schedulers: Callable[[], TaskScheduler]) -> None:
    s = schedulers()
    body = Recorder()
    await s.schedule_task("a", body, frequency="manual", timeout=1, scope="local")
    with pytest.raises(ValueError, match="already scheduled"):
        await s.schedule_task("a", body, frequency="manual", timeout=1)
    with pytest.raises(ValueError, match="not a valid cron expression"):
        await s.schedule_task("b", body, frequency="every minute", timeout=1)
    with pytest.raises(ValueError, match="frequency must be"):
        await s.schedule_task("b", body, frequency=0, timeout=1)
    with pytest.raises(ValueError, match="scope must be"):
        await s.schedule_task("b", body, frequency=1, timeout=1, scope="cluster")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout must be > 0"):
        await s.schedule_task("b", body, frequency=1, timeout=0)


def test_cadence() -> None:
    every = Cadence.parse(10, "t")
    assert every.first(100.0, 5.0) == 105.0
    assert every.next(100.0, 100.5) == 110.0
    assert every.next(100.0, 135.0) == 140.0  # missed periods are skipped, the phase is kept
    cron = Cadence.parse("*/15 * * * *", "t")
    assert cron.first(0.0, 0.0) == 900.0 and cron.next(900.0, 901.0) == 1800.0
    assert Cadence.parse("manual", "t").first(0.0, 0.0) is None
    assert Cadence.parse(timedelta(minutes=1), "t").seconds == 60.0


# ----------------------------------------------------------------------------- two kernels, one PostgreSQL


def test_two_kernels_sharing_postgres(tmp_path: Path) -> None:
    make_package(tmp_path, "kernel-test-ticker", {"test_ticker": plugins.TICKER}, {"ticker": "test_ticker:plugin"})
    db_config = database_config("pg-schema", tmp_path)
    database = db_config["connection"]["database"]
    kernels = [KernelProcess(kernel_config(database=db_config), paths=[tmp_path]) for _ in range(2)]
    try:
        for k in kernels:
            k.start(wait=False)
        for k in kernels:
            k.wait_ready(30)
        t0 = time.time()
        pids = [set(worker_pids(k)) for k in kernels]
        one, two = (httpx.Client(base_url=k.url, headers=AUTH, timeout=10) for k in kernels)
        with one, two:
            _check_trigger_over_http(one, two)

            def ran_enough() -> bool:
                runs = _runs(database)
                ticks = [r for r in runs if r["task"] == "tick" and r["started"] >= t0]
                return len(ticks) >= 5 and len([r for r in runs if r["task"] == "slow"]) >= 4

            wait_for(ran_enough, 30, "the tasks did not run often enough", interval=0.2)
            t1 = time.time()
            slow = {t["taskId"]: t for t in two.get("/api/ticker/.scheduler/v1/tasks").json()["tasks"]}["slow"]
            assert slow["taskState"]["lastRunError"] == "timed out after 0.5s"
        # the instance running the ticks goes away: the other one takes over
        last = max((r for r in _runs(database) if r["task"] == "tick"), key=lambda r: r["started"])
        owner = next(i for i, p in enumerate(pids) if last["pid"] in p)
        stopping = time.time()  # a tick its stop interrupts ends never, and the other kernel may go on at once
        kernels[owner].stop()
        stopped = time.time()
        survivor = pids[1 - owner]
        wait_for(
            lambda: [
                r for r in _runs(database) if r["task"] == "tick" and r["pid"] in survivor and r["started"] > stopped
            ],
            timeout=5,
            message="the surviving kernel did not take over the ticks",
        )
    finally:
        for k in kernels:
            k.stop()
    runs = _runs(database)
    ticks = sorted((r for r in runs if r["task"] == "tick"), key=lambda r: r["started"])
    in_window = [r for r in ticks if t0 <= r["started"] <= t1]
    # ran at least 5 times (waited for above), and at most once per 1 s period across both kernels
    assert 5 <= len(in_window) <= (t1 - t0) / 1.0 + 2, (t1 - t0, in_window)
    before_stop = [r for r in ticks if r["started"] <= stopping]
    for prev, nxt in itertools.pairwise(before_stop):
        assert prev["ended"] is not None and prev["ended"] <= nxt["started"], (prev, nxt)
    slows = [r for r in runs if r["task"] == "slow"]
    assert len(slows) >= 4 and all(r["ended"] is None for r in slows), slows
    assert "Traceback" not in kernels[0].output() + kernels[1].output()


def _check_trigger_over_http(one: httpx.Client, two: httpx.Client) -> None:
    trigger = "/api/ticker/.scheduler/v1/tasks/{}/trigger"
    assert one.post(trigger.format("long")).status_code == 200

    def long_running() -> bool:
        tasks = {t["taskId"]: t for t in two.get("/api/ticker/.scheduler/v1/tasks").json()["tasks"]}
        return bool(tasks["long"]["taskState"]["status"] == "running")

    wait_for(long_running, 5, "the triggered task is not running", ignore=(httpx.HTTPError, OSError))
    assert_error_shape(two.post(trigger.format("long")), 409, "ConflictError")
    assert_error_shape(one.post(trigger.format("long")), 409, "ConflictError")
    assert_error_shape(one.post(trigger.format("nope")), 404, "NotFoundError")
    assert httpx.post(one.base_url.join(trigger.format("long"))).status_code == 401  # routes are protected


def _runs(database: str) -> list[dict[str, Any]]:
    return asyncio.run(pg_fetch(database, "SELECT task, pid, started, ended FROM ticker.runs"))

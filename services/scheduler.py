"""The scheduler service: run plugin tasks on a cron, a fixed frequency, or on demand.

``await scheduler.schedule_task(id, fn, frequency=..., timeout=..., initial_delay=0, scope=...)``

``frequency``
    a cron expression (croniter syntax, evaluated in UTC; a 6th field is
    seconds), a number of seconds or a ``timedelta``, or ``"manual"`` (runs
    only when triggered).
``scope="global"`` (default)
    one run per period across every replica and kernel instance sharing the
    plugin's database: each task has a ``kernel_tasks`` row; an instance whose
    ``next_run_at`` has come claims it with a conditional ``UPDATE`` (a ticket
    and an expiry, timeout + 1 s), runs it, then releases it and sets the next
    time. A claim whose expiry passed (its worker died) is freed by the next
    instance that looks at the row. Times come from the database clock.
``scope="local"``
    runs in every worker on its own, never overlapping itself.

A run longer than ``timeout`` seconds is cancelled; so are runs in progress
when the plugin shuts down. A fixed frequency keeps its phase (runs are due at
``start + k * frequency``; missed periods are skipped, not caught up).

Over HTTP, under the plugin's mount (secure like any plugin route):
``GET /.scheduler/v1/tasks`` lists the tasks with their state, and
``POST /.scheduler/v1/tasks/{id}/trigger`` runs one now (404 unknown, 409
running). ``backend.scheduler.pollInterval`` (seconds, default 1) bounds how
long an instance waits before looking at a global task's row again.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import JSONResponse

from kernel.api import (
    ConflictError,
    Database,
    DatabaseService,
    HttpRouter,
    Lifecycle,
    Logger,
    NotFoundError,
    PluginMetadata,
    RootConfig,
    Scheduler,
    core_services,
    create_service_factory,
)
from kernel_services import instruments
from kernel_services.scheduler_openapi import LIST_TASKS, TRIGGER_TASK

Frequency = str | float | int | timedelta
Scope = Literal["global", "local"]
_CLAIM_MARGIN = 1.0
_NOW = {
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
    "postgres": "(EXTRACT(EPOCH FROM clock_timestamp())::float8)",
}
_TASKS_TABLE = """CREATE TABLE IF NOT EXISTS kernel_tasks (
    id TEXT PRIMARY KEY,
    settings_json TEXT NOT NULL,
    next_run_at DOUBLE PRECISION,
    current_run_ticket TEXT,
    current_run_started_at DOUBLE PRECISION,
    current_run_expires_at DOUBLE PRECISION,
    last_run_ended_at DOUBLE PRECISION,
    last_run_error TEXT
)"""


# ----------------------------------------------------------------------------- cadence


@dataclass(frozen=True)
class Cadence:
    """When a task is due: ``cron``, every ``seconds``, or only when triggered (``manual``)."""

    kind: Literal["cron", "interval", "manual"]
    seconds: float = 0.0
    cron: str = ""

    @classmethod
    def parse(cls, frequency: Frequency, task_id: str) -> Cadence:
        if isinstance(frequency, timedelta):
            frequency = frequency.total_seconds()
        if isinstance(frequency, str):
            if frequency == "manual":
                return cls("manual")
            from croniter import croniter  # type: ignore[import-untyped]  # imported when a cron is used

            if not croniter.is_valid(frequency):
                raise ValueError(f"task {task_id!r}: {frequency!r} is not a valid cron expression")
            return cls("cron", cron=frequency)
        if isinstance(frequency, bool) or not isinstance(frequency, (int, float)) or not 0 < frequency < math.inf:
            raise ValueError(f"task {task_id!r}: frequency must be a cron string, seconds > 0 or 'manual'")
        return cls("interval", seconds=float(frequency))

    def first(self, now: float, initial_delay: float) -> float | None:
        """The first due time for a task scheduled at ``now``."""
        if self.kind == "manual":
            return None
        start = now + initial_delay
        return self._cron_after(start) if self.kind == "cron" else start

    def next(self, due: float, now: float) -> float | None:
        """The due time after a run that was due at ``due`` and ended at ``now``."""
        if self.kind == "manual":
            return None
        if self.kind == "cron":
            return self._cron_after(now)
        periods = max(1, math.floor((now - due) / self.seconds) + 1)
        return due + periods * self.seconds

    def _cron_after(self, t: float) -> float:
        start = datetime.fromtimestamp(t, UTC)
        from croniter import croniter

        return float(croniter(self.cron, start).get_next(float))

    def describe(self) -> str | float:
        return self.cron if self.kind == "cron" else self.seconds if self.kind == "interval" else "manual"


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat()


# ----------------------------------------------------------------------------- global claims


class TaskStore:
    """The ``kernel_tasks`` rows of a plugin: claims, releases, triggers, expired claims."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.now_sql = _NOW["sqlite" if db.dialect == "sqlite" else "postgres"]

    async def now(self) -> float:
        return float(await self.db.fetch_val(f"SELECT {self.now_sql}"))

    async def upsert(self, task_id: str, settings: dict[str, Any], next_run_at: float | None) -> None:
        """Create the row, or update its settings; an earlier existing due time is kept."""
        await self.db.execute(
            "INSERT INTO kernel_tasks (id, settings_json, next_run_at) VALUES ($1, $2, $3) "
            "ON CONFLICT (id) DO UPDATE SET settings_json = excluded.settings_json, next_run_at = CASE "
            "WHEN excluded.next_run_at IS NULL THEN NULL "
            "WHEN kernel_tasks.next_run_at IS NULL THEN excluded.next_run_at "
            "WHEN kernel_tasks.next_run_at < excluded.next_run_at THEN kernel_tasks.next_run_at "
            "ELSE excluded.next_run_at END",
            task_id,
            json.dumps(settings),
            next_run_at,
        )

    async def row(self, task_id: str) -> dict[str, Any] | None:
        """The task's row plus ``now`` (database clock)."""
        return await self.db.fetch_one(f"SELECT *, {self.now_sql} AS now FROM kernel_tasks WHERE id = $1", task_id)

    async def rows(self) -> dict[str, dict[str, Any]]:
        return {r["id"]: r for r in await self.db.fetch_all("SELECT * FROM kernel_tasks")}

    async def claim(self, task_id: str, ticket: str, timeout: float) -> bool:
        """Take the run if it is due and nobody holds it; true if this ticket won."""
        now = self.now_sql
        changed = await self.db.execute(
            f"UPDATE kernel_tasks SET current_run_ticket = $1, current_run_started_at = {now}, "
            f"current_run_expires_at = {now} + CAST($2 AS DOUBLE PRECISION) "
            f"WHERE id = $3 AND current_run_ticket IS NULL AND next_run_at <= {now}",
            ticket,
            timeout + _CLAIM_MARGIN,
            task_id,
        )
        return changed == 1

    async def release(self, task_id: str, ticket: str, next_run_at: float | None, error: str | None) -> bool:
        changed = await self.db.execute(
            "UPDATE kernel_tasks SET current_run_ticket = NULL, current_run_started_at = NULL, "
            f"current_run_expires_at = NULL, next_run_at = $1, last_run_ended_at = {self.now_sql}, "
            "last_run_error = $2 WHERE id = $3 AND current_run_ticket = $4",
            next_run_at,
            error,
            task_id,
            ticket,
        )
        return changed == 1

    async def free_expired(self) -> int:
        """The janitor: free every claim whose expiry passed (its holder died or hung)."""
        return await self.db.execute(
            "UPDATE kernel_tasks SET current_run_ticket = NULL, current_run_started_at = NULL, "
            "current_run_expires_at = NULL, last_run_error = 'claim expired' "
            f"WHERE current_run_ticket IS NOT NULL AND current_run_expires_at < {self.now_sql}"
        )

    async def trigger(self, task_id: str) -> bool:
        """Make the task due now; false if it is running somewhere."""
        changed = await self.db.execute(
            f"UPDATE kernel_tasks SET next_run_at = {self.now_sql} WHERE id = $1 AND current_run_ticket IS NULL",
            task_id,
        )
        return changed == 1


async def open_task_store(database: DatabaseService) -> TaskStore:
    """The task store of a plugin's database, creating ``kernel_tasks`` (as a migration) if needed."""
    await database.migrate([("kernel:scheduler:001_kernel_tasks", _TASKS_TABLE)])
    return TaskStore(await database.get_client())


# ----------------------------------------------------------------------------- tasks


@dataclass
class _Task:
    id: str
    fn: Callable[[], Awaitable[None]]
    cadence: Cadence
    timeout: float
    initial_delay: float
    scope: Scope
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    runner: asyncio.Task[None] | None = None
    running: bool = False
    triggered: bool = False
    next_run_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    last_error: str | None = None

    def settings(self) -> dict[str, Any]:
        return {"frequency": self.cadence.describe(), "timeout": self.timeout, "initialDelay": self.initial_delay}


async def _call(fn: Callable[[], Any]) -> None:
    result = fn()
    if inspect.isawaitable(result):
        await result


async def _sleep(task: _Task, seconds: float | None) -> None:
    """Wait ``seconds`` (forever if None) or until the task is triggered."""
    try:
        await asyncio.wait_for(task.wake.wait(), None if seconds is None else max(0.0, seconds))
    except TimeoutError:
        pass
    task.wake.clear()


class TaskScheduler:
    """A ``Scheduler`` for one plugin in one process."""

    def __init__(self, plugin_id: str, database: DatabaseService, logger: Logger, poll_interval: float = 1.0) -> None:
        self.plugin_id = plugin_id
        self._database = database
        self._logger = logger
        self._poll = poll_interval
        self._tasks: dict[str, _Task] = {}
        self._store: TaskStore | None = None
        self._store_lock = asyncio.Lock()
        self._stopping = False

    async def _get_store(self) -> TaskStore:
        async with self._store_lock:
            if self._store is None:
                self._store = await open_task_store(self._database)
            return self._store

    async def schedule_task(
        self,
        id: str,
        fn: Callable[[], Awaitable[None]],
        *,
        frequency: Frequency,
        timeout: float,
        initial_delay: float = 0.0,
        scope: Scope = "global",
    ) -> None:
        """Register a task and start running it; a second task with the same id is an error."""
        if not isinstance(id, str) or not id:
            raise ValueError(f"plugin '{self.plugin_id}': task id must be a non-empty string")
        if id in self._tasks:
            raise ValueError(f"plugin '{self.plugin_id}': task {id!r} is already scheduled")
        if scope not in ("global", "local"):
            raise ValueError(f"task {id!r}: scope must be 'global' or 'local', not {scope!r}")
        if not timeout > 0 or not initial_delay >= 0:
            raise ValueError(f"task {id!r}: timeout must be > 0 and initial_delay >= 0 (seconds)")
        if self._stopping:
            raise RuntimeError(f"plugin '{self.plugin_id}': the scheduler is shutting down")
        task = _Task(id, fn, Cadence.parse(frequency, id), float(timeout), float(initial_delay), scope)
        self._tasks[id] = task  # reserved before any await: a concurrent duplicate fails above
        try:
            if scope == "global":
                store = await self._get_store()
                now = await store.now()
                await store.upsert(id, task.settings(), task.cadence.first(now, task.initial_delay))
                loop = self._global_loop(task, store)
            else:
                task.next_run_at = task.cadence.first(time.time(), task.initial_delay)
                loop = self._local_loop(task)
        except BaseException:
            del self._tasks[id]
            raise
        task.runner = asyncio.get_running_loop().create_task(loop, name=f"task {self.plugin_id}/{id}")

    async def _invoke(self, task: _Task) -> str | None:
        """Run the task once under its timeout; the error text, or None if it succeeded."""
        task.running, task.started_at = True, time.time()
        error: str | None = None
        try:
            await asyncio.wait_for(_call(task.fn), task.timeout)
        except TimeoutError:
            self._logger.error(f"task {task.id} timed out after {task.timeout:g}s; cancelled", task=task.id)
            error = f"timed out after {task.timeout:g}s"
        except Exception as exc:  # task code may raise anything
            self._logger.exception(f"task {task.id} failed", task=task.id)
            error = f"{type(exc).__name__}: {exc}"
        finally:
            task.running, task.ended_at = False, time.time()
        instruments.task_run(self.plugin_id, task.id, task.ended_at - task.started_at, failed=error is not None)
        return error

    # The loops end when the scheduler stops, not only when cancelled: on Python 3.11, ``asyncio.wait_for``
    # swallows a cancellation that arrives as the task's run ends (fixed in 3.12), so ``stop`` could wait for
    # ever on a loop that went on.
    async def _local_loop(self, task: _Task) -> None:
        while not self._stopping:
            if not task.triggered:
                wait = None if task.next_run_at is None else task.next_run_at - time.time()
                if wait is None or wait > 0:
                    await _sleep(task, wait)
                    continue
            due = time.time() if task.triggered else task.next_run_at or time.time()
            task.triggered = False
            task.last_error = await self._invoke(task)
            task.next_run_at = task.cadence.next(due, time.time())

    async def _global_loop(self, task: _Task, store: TaskStore) -> None:
        while not self._stopping:
            try:
                wait = await self._global_step(task, store)
            except asyncio.CancelledError:
                raise
            except Exception:  # a database hiccup must not end the loop
                self._logger.exception(f"task {task.id}: scheduler step failed", task=task.id)
                wait = self._poll
            if not self._stopping:
                await _sleep(task, min(wait, self._poll))

    async def _global_step(self, task: _Task, store: TaskStore) -> float:
        """Claim and run the task if it is due; how long to wait before looking again."""
        row = await store.row(task.id)
        if row is None:  # the row vanished (table emptied): put it back
            await store.upsert(task.id, task.settings(), task.cadence.first(await store.now(), 0.0))
            return 0.0
        now, due = row["now"], row["next_run_at"]
        task.next_run_at = due
        if row["current_run_ticket"] is not None:
            if row["current_run_expires_at"] < now:
                await store.free_expired()
                return 0.0
            return float(row["current_run_expires_at"] - now)
        if due is None or due > now:
            return self._poll if due is None else float(due - now)
        ticket = uuid.uuid4().hex
        if not await store.claim(task.id, ticket, task.timeout):
            return self._poll
        started = time.monotonic()
        error: str | None = "cancelled"
        try:
            error = await self._invoke(task)
        finally:
            ended = now + (time.monotonic() - started)
            task.next_run_at = task.cadence.next(due, ended)
            task.last_error = error
            await store.release(task.id, ticket, task.next_run_at, error)
        return 0.0

    async def trigger_task(self, id: str) -> None:
        """Run the task now: ``NotFoundError`` if unknown, ``ConflictError`` if it is running."""
        task = self._tasks.get(id)
        if task is None:
            raise NotFoundError(f"plugin '{self.plugin_id}' has no task {id!r}")
        if task.running:
            raise ConflictError(f"task {id!r} of plugin '{self.plugin_id}' is already running")
        if task.scope == "global":
            if not await (await self._get_store()).trigger(id):
                raise ConflictError(f"task {id!r} of plugin '{self.plugin_id}' is already running")
        else:
            task.triggered = True
        task.wake.set()

    async def list_tasks(self) -> list[dict[str, Any]]:
        """Every task of this plugin with its settings and state."""
        rows = await self._store.rows() if self._store is not None else {}
        return [self._describe(task, rows.get(task.id)) for task in self._tasks.values()]

    def _describe(self, task: _Task, row: dict[str, Any] | None) -> dict[str, Any]:
        if row is not None:
            running = row["current_run_ticket"] is not None
            state = {
                "status": "running" if running else "idle",
                "startedAt": _iso(row["current_run_started_at"]),
                "timesOutAt": _iso(row["current_run_expires_at"]),
                "nextRunAt": _iso(row["next_run_at"]),
                "lastRunEndedAt": _iso(row["last_run_ended_at"]),
                "lastRunError": row["last_run_error"],
            }
        else:
            state = {
                "status": "running" if task.running else "idle",
                "startedAt": _iso(task.started_at) if task.running else None,
                "timesOutAt": _iso(task.started_at + task.timeout) if task.running and task.started_at else None,
                "nextRunAt": _iso(task.next_run_at),
                "lastRunEndedAt": _iso(task.ended_at),
                "lastRunError": task.last_error,
            }
        return {
            "taskId": task.id,
            "pluginId": self.plugin_id,
            "scope": task.scope,
            "settings": task.settings(),
            "taskState": state,
            "workerState": {"status": "running" if task.running else "idle"},
        }

    async def stop(self) -> None:
        """Cancel every loop and the runs in progress; global claims are released."""
        self._stopping = True
        runners = [t.runner for t in self._tasks.values() if t.runner is not None]
        for task in self._tasks.values():
            task.wake.set()  # a loop whose cancellation was lost wakes, sees the stop and ends
        for runner in runners:
            runner.cancel()
        await asyncio.gather(*runners, return_exceptions=True)

    def register_routes(self, router: HttpRouter) -> None:
        """``GET /.scheduler/v1/tasks`` and ``POST /.scheduler/v1/tasks/{id}/trigger``."""

        async def list_route(request: Request) -> JSONResponse:
            return JSONResponse({"tasks": await self.list_tasks()})

        async def trigger_route(request: Request) -> JSONResponse:
            await self.trigger_task(request.path_params["id"])
            return JSONResponse({"taskId": request.path_params["id"], "triggered": True})

        router.add_route("/.scheduler/v1/tasks", list_route, methods=["GET"], openapi=LIST_TASKS)
        router.add_route("/.scheduler/v1/tasks/{id}/trigger", trigger_route, methods=["POST"], openapi=TRIGGER_TASK)


@create_service_factory(
    core_services.scheduler,
    {
        "config": core_services.root_config,
        "meta": core_services.plugin_metadata,
        "database": core_services.database,
        "logger": core_services.logger,
        "lifecycle": core_services.lifecycle,
        "router": core_services.http_router,
    },
)
def _scheduler(
    config: RootConfig,
    meta: PluginMetadata,
    database: DatabaseService,
    logger: Logger,
    lifecycle: Lifecycle,
    router: HttpRouter,
) -> Scheduler:
    poll = config.get_optional_number("backend.scheduler.pollInterval") or 1.0
    scheduler = TaskScheduler(meta.plugin_id, database, logger.child(service="scheduler"), float(poll))
    scheduler.register_routes(router)
    lifecycle.add_before_shutdown_hook(scheduler.stop, label="stop scheduler")
    return scheduler


FACTORIES = [_scheduler]

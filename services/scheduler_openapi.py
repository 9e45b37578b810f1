"""The scheduler's routes in the plugin's OpenAPI document: ``GET /.scheduler/v1/tasks``, ``POST .../{id}/trigger``."""

from __future__ import annotations

from typing import Literal

import msgspec

from kernel.api import Operation

Status = Literal["running", "idle"]


class TaskSettings(msgspec.Struct, rename="camel"):
    #: a cron expression, seconds between runs, or "manual"
    frequency: str | float
    timeout: float
    initial_delay: float


class TaskState(msgspec.Struct, rename="camel"):
    status: Status
    started_at: str | None
    times_out_at: str | None
    next_run_at: str | None
    last_run_ended_at: str | None
    last_run_error: str | None


class WorkerState(msgspec.Struct):
    status: Status


class Task(msgspec.Struct, rename="camel"):
    """A task of the plugin, its settings and its state (ISO 8601 times)."""

    task_id: str
    plugin_id: str
    scope: Literal["global", "local"]
    settings: TaskSettings
    task_state: TaskState
    worker_state: WorkerState


class Tasks(msgspec.Struct):
    tasks: list[Task]


class TaskPath(msgspec.Struct):
    id: str


class Triggered(msgspec.Struct, rename="camel"):
    task_id: str
    triggered: bool


LIST_TASKS = Operation(summary="The plugin's scheduled tasks", tags=["scheduler"], response=Tasks)
TRIGGER_TASK = Operation(
    summary="Run a task now",
    tags=["scheduler"],
    path_params=TaskPath,
    response=Triggered,
    errors={404: "The plugin has no such task", 409: "The task is running"},
)
